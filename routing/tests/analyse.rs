//! Every condition rule of docs/design.md, "Analysis and status".

use routing::crd::Kind;
use routing::fixtures::*;
use routing::{CompileOptions, Compiled, ObjectReport, Objects, compile};

fn build(o: &Objects) -> Compiled {
    compile(o, &CompileOptions::default())
}

fn report<'c>(c: &'c Compiled, kind: Kind, name: &str) -> &'c ObjectReport {
    c.report(kind, name)
        .unwrap_or_else(|| panic!("no report for {kind}/{name}"))
}

/// `[Ready, LoopRisk, Conflict]` as "True/Reason" or "False".
fn summary(r: &ObjectReport) -> [String; 3] {
    r.conditions.clone().map(|c| match (c.type_, c.status) {
        ("Ready", true) | ("LoopRisk", false) | ("AuthoritativenessConflict", false) => {
            c.status_str().to_owned()
        }
        _ => format!("{}/{}", c.status_str(), c.reason),
    })
}

fn s(a: &str, b: &str, c: &str) -> [String; 3] {
    [a.into(), b.into(), c.into()]
}

#[test]
fn every_object_gets_three_conditions_and_clean_objects_are_ready() {
    let mut o = Objects::default();
    o.address_spaces
        .push(authoritative("example", "example.com"));
    let mut ann = contact("ann", &["ann@example.com"], "ann@mbx.example.com");
    ann.spec.alias = Some("annie".into());
    o.contacts.push(ann);
    o.connectors
        .push(connector("mbx", &[("mbx.example.com", 1)], &["[10.0.0.1]"]));
    o.policies.push(policy("p", 1, &["%m@example.com"], None));
    let c = build(&o);
    assert_eq!(c.reports.len(), 4);
    for r in &c.reports {
        let types: Vec<_> = r.conditions.iter().map(|c| c.type_).collect();
        assert_eq!(types, ["Ready", "LoopRisk", "AuthoritativenessConflict"]);
    }
    assert_eq!(
        summary(report(&c, Kind::AddressSpace, "example")),
        s("True", "False", "False")
    );
    assert_eq!(
        summary(report(&c, Kind::MailContact, "ann")),
        s("True", "False", "False")
    );
    let ready = &report(&c, Kind::MailContact, "ann").conditions;
    assert_eq!(
        (ready[0].reason, ready[1].reason, ready[2].reason),
        ("Compiled", "NoLoopRisk", "NoConflict")
    );
    let stalled = report(&c, Kind::MailContact, "ann").stalled();
    assert_eq!((stalled.type_, stalled.status), ("Stalled", false));
}

#[test]
fn rewrite_cycle_of_contacts_names_the_objects() {
    let mut o = Objects::default();
    o.address_spaces
        .push(authoritative("example", "example.com"));
    o.contacts
        .push(contact("alice", &["alice@example.com"], "bob@example.com"));
    o.contacts
        .push(contact("bob", &["bob@example.com"], "alice@example.com"));
    o.contacts
        .push(contact("self", &["self@example.com"], "SELF@example.com"));
    let c = build(&o);
    for name in ["alice", "bob"] {
        let r = report(&c, Kind::MailContact, name);
        assert_eq!(
            summary(r),
            s("False/RewriteCycle", "True/RewriteCycle", "False")
        );
        assert_eq!(
            r.conditions[1].message,
            "RewriteCycle: MailContact/alice → MailContact/bob → MailContact/alice"
        );
        let st = r.stalled();
        assert_eq!((st.status, st.reason), (true, "RewriteCycle"));
    }
    let r = report(&c, Kind::MailContact, "self");
    assert_eq!(
        r.conditions[1].message,
        "RewriteCycle: MailContact/self → MailContact/self"
    );
}

#[test]
fn rewrite_cycle_through_an_alias_domain() {
    let mut o = Objects::default();
    o.address_spaces.push(authoritative("adatum", "adatum.com"));
    o.address_spaces
        .push(alias_domain("cpandl", "cpandl.net", "adatum.com"));
    o.contacts
        .push(contact("ann", &["ann@adatum.com"], "ann@cpandl.net"));
    let c = build(&o);
    let expected = "RewriteCycle: MailContact/ann → AddressSpace/cpandl → MailContact/ann";
    assert_eq!(
        report(&c, Kind::MailContact, "ann").conditions[1].message,
        expected
    );
    assert_eq!(
        report(&c, Kind::AddressSpace, "cpandl").conditions[1].message,
        expected
    );
    // The alias domain as a whole does not loop: others still resolve.
    assert_eq!(
        c.routing.resolve("joe@cpandl.net", false).action(),
        "reject"
    );
}

#[test]
fn alias_domain_cycles_and_spaces_rewriting_into_them() {
    let mut o = Objects::default();
    o.address_spaces
        .push(alias_domain("a", "a.example", "b.example"));
    o.address_spaces
        .push(alias_domain("b", "b.example", "a.example"));
    o.address_spaces
        .push(alias_domain("c", "*.c.example", "a.example"));
    o.address_spaces
        .push(alias_domain("d", "d.example", "d.example"));
    let c = build(&o);
    let cycle = "RewriteCycle: AddressSpace/a → AddressSpace/b → AddressSpace/a";
    assert_eq!(
        report(&c, Kind::AddressSpace, "a").conditions[1].message,
        cycle
    );
    assert_eq!(
        report(&c, Kind::AddressSpace, "b").conditions[1].message,
        cycle
    );
    assert_eq!(
        report(&c, Kind::AddressSpace, "c").conditions[1].message,
        "RewriteCycle: rewrites into the cycle AddressSpace/a → AddressSpace/b → AddressSpace/a"
    );
    assert_eq!(
        report(&c, Kind::AddressSpace, "d").conditions[1].message,
        "RewriteCycle: AddressSpace/d → AddressSpace/d"
    );
}

#[test]
fn forwards_to_self_flags_connector_space_and_contacts() {
    let mut o = Objects::default();
    o.address_spaces
        .push(internal_relay("example", "example.com"));
    o.address_spaces
        .push(authoritative("other", "other.example"));
    o.contacts
        .push(contact("ann", &["ann@other.example"], "ann@example.com"));
    o.connectors.push(connector(
        "unix",
        &[("example.com", 1)],
        &["[10.96.0.25]:25"],
    ));
    let opts = CompileOptions {
        self_addresses: vec!["10.96.0.25".into(), "relay.mail.svc".into()],
    };
    let c = compile(&o, &opts);
    assert_eq!(
        summary(report(&c, Kind::SmtpConnector, "unix")),
        s("False/ForwardsToSelf", "True/ForwardsToSelf", "False")
    );
    assert_eq!(
        summary(report(&c, Kind::AddressSpace, "example")),
        s("False/ForwardsToSelf", "True/ForwardsToSelf", "False")
    );
    assert_eq!(
        summary(report(&c, Kind::MailContact, "ann")),
        s("False/ForwardsToSelf", "True/ForwardsToSelf", "False")
    );
    assert!(
        report(&c, Kind::AddressSpace, "example").conditions[1]
            .message
            .contains("SmtpConnector/unix")
    );
}

#[test]
fn mx_for_accepted_domain() {
    let mut o = Objects::default();
    o.address_spaces
        .push(internal_relay("shared", "shared.example"));
    o.address_spaces.push(authoritative("mine", "mine.example"));
    o.connectors.push(connector("internet", &[("*", 1)], &[]));
    let c = build(&o);
    assert_eq!(
        summary(report(&c, Kind::AddressSpace, "shared")),
        s(
            "False/MxForAcceptedDomain",
            "True/MxForAcceptedDomain",
            "False"
        )
    );
    assert_eq!(
        summary(report(&c, Kind::SmtpConnector, "internet")),
        s(
            "False/MxForAcceptedDomain",
            "True/MxForAcceptedDomain",
            "False"
        )
    );
    // An authoritative domain never goes out through a connector: no risk there.
    assert_eq!(
        summary(report(&c, Kind::AddressSpace, "mine")),
        s("True", "False", "False")
    );
}

#[test]
fn duplicate_claim_oldest_wins_then_name() {
    let mut o = Objects::default();
    let mut young = authoritative("aaa-young", "example.com");
    created(&mut young.metadata, 10);
    let mut old = internal_relay("zzz-old", "EXAMPLE.com");
    created(&mut old.metadata, 1);
    o.address_spaces.push(young);
    o.address_spaces.push(old);
    o.connectors
        .push(connector("unix", &[("example.com", 1)], &["[10.0.0.1]"]));
    let c = build(&o);
    assert_eq!(
        summary(report(&c, Kind::AddressSpace, "aaa-young")),
        s("False/DuplicateClaim", "False", "True/DuplicateClaim")
    );
    assert_eq!(
        summary(report(&c, Kind::AddressSpace, "zzz-old")),
        s("True", "False", "False")
    );
    assert!(
        report(&c, Kind::AddressSpace, "aaa-young").conditions[2]
            .message
            .contains("AddressSpace/zzz-old")
    );
    assert_eq!(
        c.routing.resolve("x@example.com", false).action(),
        "forward"
    );

    // Without creation times, the name decides.
    let mut o = Objects::default();
    o.address_spaces.push(authoritative("b", "example.com"));
    o.address_spaces.push(internal_relay("a", "example.com"));
    o.connectors
        .push(connector("unix", &[("example.com", 1)], &["[10.0.0.1]"]));
    let c = build(&o);
    assert_eq!(
        report(&c, Kind::AddressSpace, "b").conditions[2].reason,
        "DuplicateClaim"
    );
}

#[test]
fn shared_authoritative_space() {
    let mut o = Objects::default();
    o.address_spaces
        .push(authoritative("corp", "*.corp.example"));
    o.address_spaces
        .push(internal_relay("eu", "eu.corp.example"));
    o.connectors
        .push(connector("eu", &[("eu.corp.example", 1)], &["[10.0.0.1]"]));
    o.connectors
        .push(connector("us", &[("us.corp.example", 1)], &["[10.0.0.2]"]));
    o.connectors
        .push(connector("all", &[("*", 1)], &["[10.0.0.3]"]));
    o.connectors
        .push(connector("wide", &[("*.example", 1)], &["[10.0.0.4]"]));
    let c = build(&o);
    // us.corp.example lies in the authoritative wildcard; eu.corp.example has its own (shared) space.
    assert_eq!(
        summary(report(&c, Kind::SmtpConnector, "us")),
        s(
            "False/SharedAuthoritativeSpace",
            "False",
            "True/SharedAuthoritativeSpace"
        )
    );
    assert_eq!(
        summary(report(&c, Kind::SmtpConnector, "eu")),
        s("True", "False", "False")
    );
    assert_eq!(
        summary(report(&c, Kind::SmtpConnector, "all")),
        s("True", "False", "False")
    );
    assert_eq!(
        summary(report(&c, Kind::SmtpConnector, "wide")),
        s(
            "False/SharedAuthoritativeSpace",
            "False",
            "True/SharedAuthoritativeSpace"
        )
    );
    let corp = report(&c, Kind::AddressSpace, "corp");
    assert_eq!(
        summary(corp),
        s(
            "False/SharedAuthoritativeSpace",
            "False",
            "True/SharedAuthoritativeSpace"
        )
    );
    assert!(corp.conditions[2].message.contains("SmtpConnector/us"));
    assert!(corp.conditions[2].message.contains("SmtpConnector/wide"));
    assert_eq!(
        summary(report(&c, Kind::AddressSpace, "eu")),
        s("True", "False", "False")
    );
}

#[test]
fn relay_without_route() {
    let mut o = Objects::default();
    o.address_spaces
        .push(internal_relay("lonely", "*.lonely.example"));
    o.connectors.push(connector(
        "apex-only",
        &[("lonely.example", 1)],
        &["[10.0.0.1]"],
    ));
    let c = build(&o);
    assert_eq!(
        summary(report(&c, Kind::AddressSpace, "lonely")),
        s("False/RelayWithoutRoute", "False", "True/RelayWithoutRoute")
    );
    o.connectors.push(connector(
        "wild",
        &[("*.lonely.example", 1)],
        &["[10.0.0.1]"],
    ));
    assert_eq!(
        summary(report(&build(&o), Kind::AddressSpace, "lonely")),
        s("True", "False", "False")
    );
}

#[test]
fn duplicate_address_oldest_contact_wins() {
    let mut o = Objects::default();
    o.address_spaces
        .push(authoritative("example", "example.com"));
    o.connectors
        .push(connector("mbx", &[("mbx.example.com", 1)], &["[10.0.0.1]"]));
    let mut first = contact("zed", &["jo@example.com"], "jo1@mbx.example.com");
    created(&mut first.metadata, 1);
    let mut second = contact(
        "amy",
        &["JO@Example.com", "amy@example.com"],
        "jo2@mbx.example.com",
    );
    created(&mut second.metadata, 2);
    o.contacts.push(second);
    o.contacts.push(first);
    let c = build(&o);
    let amy = report(&c, Kind::MailContact, "amy");
    assert_eq!(summary(amy), s("False/DuplicateAddress", "False", "False"));
    assert!(amy.conditions[0].message.contains("MailContact/zed"));
    assert_eq!(amy.addresses, vec!["amy@example.com"]);
    assert!(
        matches!(c.routing.resolve("jo@example.com", false), routing::Decision::Forward { recipient, .. } if recipient == "jo1@mbx.example.com")
    );
}

#[test]
fn domain_not_accepted() {
    let mut o = Objects::default();
    o.address_spaces
        .push(authoritative("example", "example.com"));
    o.connectors
        .push(connector("internet", &[("*", 1)], &["[10.0.0.1]"]));
    o.contacts.push(contact(
        "ann",
        &["ann@example.com", "ann@elsewhere.org"],
        "ann@target.org",
    ));
    o.policies
        .push(policy("p", 1, &["%m@example.com", "%m@nowhere.org"], None));
    let c = build(&o);
    let ann = report(&c, Kind::MailContact, "ann");
    assert_eq!(summary(ann), s("False/DomainNotAccepted", "False", "False"));
    assert_eq!(
        c.routing.resolve("ann@elsewhere.org", false).action(),
        "reject"
    );
    assert!(
        c.table()
            .addresses
            .iter()
            .all(|a| !a.address.ends_with("elsewhere.org"))
    );
    let p = report(&c, Kind::RecipientPolicy, "p");
    assert_eq!(p.conditions[0].reason, "DomainNotAccepted");
    assert!(p.conditions[0].message.contains("nowhere.org"));
}

#[test]
fn no_route_for_undeliverable_targets() {
    let mut o = Objects::default();
    o.address_spaces
        .push(authoritative("example", "example.com"));
    o.contacts.push(contact(
        "unknown-target",
        &["a@example.com"],
        "nobody@example.com",
    ));
    o.contacts.push(contact(
        "no-connector",
        &["b@example.com"],
        "b@nowhere.example",
    ));
    let c = build(&o);
    let r = report(&c, Kind::MailContact, "unknown-target");
    assert_eq!(summary(r), s("False/NoRoute", "False", "False"));
    assert!(
        r.conditions[0].message.contains("550 5.1.1"),
        "{}",
        r.conditions[0].message
    );
    let r = report(&c, Kind::MailContact, "no-connector");
    assert!(
        r.conditions[0].message.contains("451 4.4.0"),
        "{}",
        r.conditions[0].message
    );
}

#[test]
fn invalid_specs_are_reported_with_their_field() {
    let mut o = Objects::default();
    o.address_spaces
        .push(authoritative("bad-domain", "exa mple.com"));
    let mut both = authoritative("both", "both.example");
    both.spec.rewrite_to = Some("x.example".into());
    o.address_spaces.push(both);
    let mut neither = authoritative("neither", "neither.example");
    neither.spec.r#type = None;
    o.address_spaces.push(neither);
    o.address_spaces
        .push(alias_domain("bad-alias", "a.example", "*.b.example"));
    o.contacts
        .push(contact("bad-target", &[], "not an address"));
    o.contacts.push(contact(
        "bad-proxy",
        &["ok@x.example", "nope"],
        "t@x.example",
    ));
    o.policies
        .push(policy("bad-template", 1, &["%q@example.com"], None));
    let mut two_primaries = policy(
        "two-primaries",
        1,
        &["%m@example.com", "%g@example.com"],
        None,
    );
    two_primaries.spec.address_templates[1].primary = Some(true);
    o.policies.push(two_primaries);
    let c = build(&o);
    let expect = [
        (Kind::AddressSpace, "bad-domain", "spec.domain"),
        (
            Kind::AddressSpace,
            "both",
            "exactly one of spec.type and spec.rewriteTo",
        ),
        (
            Kind::AddressSpace,
            "neither",
            "exactly one of spec.type and spec.rewriteTo",
        ),
        (Kind::AddressSpace, "bad-alias", "spec.rewriteTo"),
        (Kind::MailContact, "bad-target", "spec.targetAddress"),
        (Kind::MailContact, "bad-proxy", "spec.proxyAddresses[1]"),
        (
            Kind::RecipientPolicy,
            "bad-template",
            "spec.addressTemplates[0].template",
        ),
        (
            Kind::RecipientPolicy,
            "two-primaries",
            "exactly one template must be primary",
        ),
    ];
    for (kind, name, field) in expect {
        let r = report(&c, kind, name);
        assert_eq!(r.conditions[0].reason, "InvalidSpec", "{kind}/{name}");
        assert!(
            r.conditions[0].message.contains(field),
            "{kind}/{name}: {}",
            r.conditions[0].message
        );
    }
    assert!(c.table().spaces.is_empty() && c.table().addresses.is_empty());
}

#[test]
fn several_problems_first_reason_in_design_order_and_message_lists_all() {
    let mut o = Objects::default();
    o.address_spaces
        .push(authoritative("example", "example.com"));
    let mut older = contact("older", &["dup@example.com"], "x@example.com");
    created(&mut older.metadata, 1);
    o.contacts.push(older);
    o.contacts
        .push(contact("x", &["x@example.com"], "x@example.com"));
    // "newer": DuplicateAddress, DomainNotAccepted, and a target into a cycle.
    let mut newer = contact(
        "newer",
        &["dup@example.com", "n@outside.org", "n@example.com"],
        "x@example.com",
    );
    created(&mut newer.metadata, 2);
    o.contacts.push(newer);
    let c = build(&o);
    let r = report(&c, Kind::MailContact, "newer");
    assert_eq!(
        summary(r),
        s("False/RewriteCycle", "True/RewriteCycle", "False")
    );
    let reasons: Vec<_> = r.problems.iter().map(|p| p.reason.as_str()).collect();
    assert_eq!(
        reasons,
        ["RewriteCycle", "DuplicateAddress", "DomainNotAccepted"]
    );
    let msg = &r.conditions[0].message;
    assert!(
        msg.starts_with("RewriteCycle: ")
            && msg.contains("; DuplicateAddress: ")
            && msg.contains("; DomainNotAccepted: "),
        "{msg}"
    );
    // LoopRisk's message holds only loop problems.
    assert!(!r.conditions[1].message.contains("DuplicateAddress"));
}

#[test]
fn reports_are_deterministic_whatever_the_input_order() {
    let o = routing::fixtures::organisation(300, 5, 7);
    let mut reversed = o.clone();
    reversed.contacts.reverse();
    reversed.connectors.reverse();
    reversed.policies.reverse();
    reversed.address_spaces.reverse();
    let a = build(&o);
    let b = build(&reversed);
    assert_eq!(a.reports, b.reports);
    assert_eq!(a.table(), b.table());
    assert_eq!(
        routing::table::encode(a.table()),
        routing::table::encode(b.table())
    );
}

#[test]
fn a_connector_serving_known_recipients_of_an_authoritative_space_is_no_conflict() {
    // The gateway pattern: example.com is authoritative, its listed
    // recipients go on to the mailbox server as addressed.
    let mut o = Objects::default();
    o.address_spaces
        .push(authoritative("example", "example.com"));
    o.address_spaces.push(authoritative("other", "other.com"));
    o.connectors.push(connector(
        "mailbox",
        &[("example.com", 1)],
        &["[10.0.0.40]"],
    ));
    o.connectors
        .push(connector("other", &[("other.com", 1)], &["[10.0.0.41]"]));
    o.contacts.push(recipient("ann", &["ann@example.com"]));
    let c = build(&o);
    for (kind, name) in [
        (Kind::AddressSpace, "example"),
        (Kind::SmtpConnector, "mailbox"),
        (Kind::MailContact, "ann"),
    ] {
        assert_eq!(
            summary(report(&c, kind, name)),
            s("True", "False", "False"),
            "{kind}/{name}"
        );
    }
    let ready = &report(&c, Kind::MailContact, "ann").conditions[0];
    assert_eq!(ready.message, "1 address(es) forwarded as addressed");
    // other.com has no such recipient: the connector there is still a conflict.
    assert_eq!(
        summary(report(&c, Kind::SmtpConnector, "other")),
        s(
            "False/SharedAuthoritativeSpace",
            "False",
            "True/SharedAuthoritativeSpace"
        )
    );
}

#[test]
fn a_known_recipient_that_reaches_no_connector_or_the_relay_itself_is_reported() {
    let mut o = Objects::default();
    o.address_spaces
        .push(authoritative("example", "example.com"));
    o.address_spaces.push(authoritative("self", "self.example"));
    o.connectors
        .push(connector("loop", &[("self.example", 1)], &["[10.9.9.9]"]));
    o.contacts.push(recipient("ann", &["ann@example.com"]));
    o.contacts.push(recipient("bob", &["bob@self.example"]));
    let c = compile(
        &o,
        &CompileOptions {
            self_addresses: vec!["10.9.9.9".into()],
        },
    );
    let ann = report(&c, Kind::MailContact, "ann");
    assert_eq!(summary(ann), s("False/NoRoute", "False", "False"));
    assert_eq!(
        ann.conditions[0].message,
        "NoRoute: ann@example.com is forwarded as addressed but 451 4.4.0 (no enabled SmtpConnector covers example.com: deferred)"
    );
    let bob = report(&c, Kind::MailContact, "bob");
    assert_eq!(bob.conditions[1].reason, "ForwardsToSelf");
}
