//! Every rule of docs/design.md, "Resolving one recipient", through compile → resolve.

use routing::fixtures::*;
use routing::resolve::MAX_REWRITES;
use routing::{CompileOptions, Compiled, Decision, Objects, compile};

fn build(o: &Objects) -> Compiled {
    compile(o, &CompileOptions::default())
}

/// `(action, code or connector, recipient)` for compact assertions.
fn decide(c: &Compiled, rcpt: &str, may_relay: bool) -> (String, String, String) {
    match c.routing.resolve(rcpt, may_relay) {
        Decision::Forward {
            recipient,
            connector,
        } => (
            "forward".into(),
            c.routing.connector(connector).name.clone(),
            recipient,
        ),
        Decision::Reply(r) => (
            if r.code >= 500 { "reject" } else { "defer" }.into(),
            format!("{} {}", r.code, r.enhanced),
            String::new(),
        ),
    }
}

fn fwd(connector: &str, rcpt: &str) -> (String, String, String) {
    ("forward".into(), connector.into(), rcpt.into())
}

fn reply(code: &str) -> (String, String, String) {
    let action = if code.starts_with('5') {
        "reject"
    } else {
        "defer"
    };
    (action.into(), code.into(), String::new())
}

fn alias_table() -> Objects {
    let mut o = Objects::default();
    o.address_spaces
        .push(authoritative("example", "example.com"));
    o.contacts
        .push(contact("ann", &["ann@example.com"], "ann@mbx1.example.com"));
    o.contacts.push(contact(
        "bob",
        &["Bob.Marsh@Example.com"],
        "bob@mbx2.example.com",
    ));
    o.connectors.push(connector(
        "mbx1",
        &[("mbx1.example.com", 1)],
        &["[10.0.0.11]"],
    ));
    o.connectors.push(connector(
        "mbx2",
        &[("mbx2.example.com", 1)],
        &["[10.0.0.12]"],
    ));
    o
}

#[test]
fn malformed_recipients_are_501() {
    let c = build(&alias_table());
    for bad in [
        "",
        "ann",
        "ann@",
        "@example.com",
        "a b@example.com",
        "ann@exa mple.com",
        "ann@@example.com",
    ] {
        assert_eq!(decide(&c, bad, true), reply("501 5.1.3"), "{bad:?}");
    }
}

#[test]
fn exact_contact_match_is_case_insensitive_and_rewrites_to_target() {
    let c = build(&alias_table());
    assert_eq!(
        decide(&c, "ann@example.com", false),
        fwd("mbx1", "ann@mbx1.example.com")
    );
    assert_eq!(
        decide(&c, "ANN@EXAMPLE.COM", false),
        fwd("mbx1", "ann@mbx1.example.com")
    );
    assert_eq!(
        decide(&c, "<bob.marsh@example.com>", false),
        fwd("mbx2", "bob@mbx2.example.com")
    );
    assert_eq!(
        decide(&c, "\"ann\"@example.com", false),
        fwd("mbx1", "ann@mbx1.example.com")
    );
}

#[test]
fn authoritative_space_refuses_unknown_recipients() {
    let c = build(&alias_table());
    assert_eq!(decide(&c, "carol@example.com", false), reply("550 5.1.1"));
    assert_eq!(decide(&c, "carol@example.com", true), reply("550 5.1.1"));
}

#[test]
fn never_an_open_relay() {
    let c = build(&alias_table());
    assert_eq!(decide(&c, "x@other.org", false), reply("554 5.7.1"));
    // A domain that only a connector names is not accepted either.
    assert_eq!(decide(&c, "x@mbx1.example.com", false), reply("554 5.7.1"));
    // Relay clients may use connectors directly.
    assert_eq!(
        decide(&c, "x@mbx1.example.com", true),
        fwd("mbx1", "x@mbx1.example.com")
    );
    // ... but only where one covers the domain.
    assert_eq!(decide(&c, "x@other.org", true), reply("451 4.4.0"));
}

#[test]
fn relay_permission_is_judged_on_the_original_recipient_only() {
    let mut o = alias_table();
    // An accepted address whose target is outside: routed although the client may not relay.
    o.contacts
        .push(contact("ext", &["ext@example.com"], "someone@partner.org"));
    o.connectors.push(connector("internet", &[("*", 10)], &[]));
    let c = build(&o);
    assert_eq!(
        decide(&c, "ext@example.com", false),
        fwd("internet", "someone@partner.org")
    );
    assert_eq!(decide(&c, "someone@partner.org", false), reply("554 5.7.1"));
}

#[test]
fn wildcard_spaces_match_whole_labels_at_any_depth_but_not_the_apex() {
    let mut o = Objects::default();
    o.address_spaces.push(authoritative("sub", "*.example.com"));
    o.contacts
        .push(contact("a", &["a@x.y.example.com"], "a@elsewhere.org"));
    o.connectors
        .push(connector("internet", &[("*", 1)], &["[192.0.2.1]"]));
    let c = build(&o);
    assert_eq!(
        decide(&c, "a@x.y.example.com", false),
        fwd("internet", "a@elsewhere.org")
    );
    assert_eq!(decide(&c, "b@x.example.com", false), reply("550 5.1.1"));
    assert_eq!(decide(&c, "b@example.com", false), reply("554 5.7.1"));
    assert_eq!(decide(&c, "b@badexample.com", false), reply("554 5.7.1"));
    assert_eq!(decide(&c, "b@x.badexample.com", false), reply("554 5.7.1"));
}

#[test]
fn most_specific_space_wins() {
    let mut o = Objects::default();
    o.address_spaces
        .push(authoritative("corp", "*.corp.example"));
    o.address_spaces
        .push(internal_relay("eu", "eu.corp.example"));
    o.connectors.push(connector(
        "eu-legacy",
        &[("eu.corp.example", 1)],
        &["[10.1.1.1]"],
    ));
    let c = build(&o);
    assert_eq!(
        decide(&c, "x@eu.corp.example", false),
        fwd("eu-legacy", "x@eu.corp.example")
    );
    assert_eq!(decide(&c, "x@us.corp.example", false), reply("550 5.1.1"));
    assert_eq!(decide(&c, "x@a.eu.corp.example", false), reply("550 5.1.1"));
}

#[test]
fn idna_domains_match_their_a_label_form() {
    let mut o = Objects::default();
    o.address_spaces
        .push(authoritative("buecher", "Bücher.example"));
    o.contacts.push(contact(
        "j",
        &["jürgen@xn--bcher-kva.example"],
        "j@mbx.example",
    ));
    o.connectors
        .push(connector("mbx", &[("mbx.example", 1)], &["[10.0.0.1]"]));
    let c = build(&o);
    assert_eq!(
        decide(&c, "Jürgen@bücher.example", false),
        fwd("mbx", "j@mbx.example")
    );
    assert_eq!(
        decide(&c, "jürgen@BÜCHER.example", false),
        fwd("mbx", "j@mbx.example")
    );
    assert_eq!(
        decide(&c, "x@xn--bcher-kva.example", false),
        reply("550 5.1.1")
    );
}

#[test]
fn shared_space_forwards_unknown_recipients_unchanged() {
    let mut o = Objects::default();
    o.address_spaces
        .push(internal_relay("example", "example.com"));
    o.contacts.push(contact(
        "ann",
        &["ann@example.com"],
        "ann@exchange.example.com",
    ));
    o.connectors.push(connector(
        "exchange",
        &[("exchange.example.com", 1)],
        &["[10.0.0.20]"],
    ));
    o.connectors
        .push(connector("unix", &[("example.com", 1)], &["[10.0.0.30]"]));
    let c = build(&o);
    assert_eq!(
        decide(&c, "ann@example.com", false),
        fwd("exchange", "ann@exchange.example.com")
    );
    // Unchanged: the sender's spelling is kept.
    assert_eq!(
        decide(&c, "Joe.Bloggs@EXAMPLE.com", false),
        fwd("unix", "Joe.Bloggs@EXAMPLE.com")
    );
}

#[test]
fn external_relay_forwards_the_whole_space() {
    let mut o = Objects::default();
    o.address_spaces.push(routing::fixtures::space(
        "p",
        "partner.example",
        routing::crd::AddressSpaceType::ExternalRelay,
    ));
    o.connectors.push(connector(
        "partner",
        &[("partner.example", 1)],
        &["partner-mx.example"],
    ));
    let c = build(&o);
    assert_eq!(
        decide(&c, "x@partner.example", false),
        fwd("partner", "x@partner.example")
    );
}

#[test]
fn relayed_space_without_connector_defers_4_4_0() {
    let mut o = Objects::default();
    o.address_spaces
        .push(internal_relay("example", "example.com"));
    let c = build(&o);
    assert_eq!(decide(&c, "x@example.com", false), reply("451 4.4.0"));
}

#[test]
fn alias_domains_rewrite_and_chain_into_contacts() {
    let mut o = alias_table();
    o.address_spaces
        .push(alias_domain("net", "example.net", "example.com"));
    o.address_spaces
        .push(alias_domain("org", "*.example.org", "example.net"));
    let c = build(&o);
    assert_eq!(
        decide(&c, "ann@example.net", false),
        fwd("mbx1", "ann@mbx1.example.com")
    );
    assert_eq!(
        decide(&c, "ann@a.b.example.org", false),
        fwd("mbx1", "ann@mbx1.example.com")
    );
    assert_eq!(decide(&c, "nobody@example.net", false), reply("550 5.1.1"));
    // A contact address in the alias domain itself wins over the domain rewrite.
    o.contacts.push(contact(
        "special",
        &["ann@example.net"],
        "special@mbx2.example.com",
    ));
    let c = build(&o);
    assert_eq!(
        decide(&c, "ann@example.net", false),
        fwd("mbx2", "special@mbx2.example.com")
    );
}

#[test]
fn contacts_chain_through_other_contacts() {
    let mut o = alias_table();
    o.contacts
        .push(contact("team", &["team@example.com"], "ann@example.com"));
    let c = build(&o);
    assert_eq!(
        decide(&c, "team@example.com", false),
        fwd("mbx1", "ann@mbx1.example.com")
    );
}

/// A chain of `n` contacts: c0@x → c1@x → … → c(n-1)@x → out@mbx.
fn chain(n: usize) -> Objects {
    let mut o = Objects::default();
    o.address_spaces.push(authoritative("x", "x.example"));
    o.connectors
        .push(connector("mbx", &[("mbx.example", 1)], &["[10.0.0.1]"]));
    for i in 0..n {
        let target = if i + 1 == n {
            "out@mbx.example".to_string()
        } else {
            format!("c{}@x.example", i + 1)
        };
        o.contacts.push(contact(
            &format!("c{i}"),
            &[&format!("c{i}@x.example")],
            &target,
        ));
    }
    o
}

#[test]
fn rewrite_chain_depth_is_limited_to_eight() {
    let c = build(&chain(MAX_REWRITES as usize));
    assert_eq!(
        decide(&c, "c0@x.example", false),
        fwd("mbx", "out@mbx.example")
    );
    let c = build(&chain(MAX_REWRITES as usize + 1));
    assert_eq!(decide(&c, "c0@x.example", false), reply("554 5.4.6"));
    assert_eq!(
        decide(&c, "c1@x.example", false),
        fwd("mbx", "out@mbx.example")
    );
    // The analyser warns about the too-long chain before mail flows.
    let r = c.report(routing::crd::Kind::MailContact, "c0").unwrap();
    assert_eq!(r.conditions[0].reason, "NoRoute");
    assert!(
        r.conditions[0].message.contains("more than 8 rewrites"),
        "{}",
        r.conditions[0].message
    );
}

#[test]
fn proven_loops_defer_with_4_4_6() {
    let mut o = alias_table();
    o.contacts
        .push(contact("x", &["x@example.com"], "y@example.com"));
    o.contacts
        .push(contact("y", &["y@example.com"], "x@example.com"));
    o.contacts
        .push(contact("z", &["z@example.com"], "x@example.com"));
    o.address_spaces
        .push(alias_domain("a", "a.example", "b.example"));
    o.address_spaces
        .push(alias_domain("b", "b.example", "a.example"));
    let c = build(&o);
    for r in [
        "x@example.com",
        "y@example.com",
        "z@example.com",
        "q@a.example",
        "q@b.example",
    ] {
        assert_eq!(decide(&c, r, false), reply("451 4.4.6"), "{r}");
    }
    // Unrelated routes are untouched.
    assert_eq!(
        decide(&c, "ann@example.com", false),
        fwd("mbx1", "ann@mbx1.example.com")
    );
}

#[test]
fn forwarding_to_self_defers_with_4_4_6() {
    let mut o = Objects::default();
    o.address_spaces
        .push(internal_relay("example", "example.com"));
    o.connectors.push(connector(
        "unix",
        &[("example.com", 1)],
        &["[mailroute-relay.mail.svc]:25"],
    ));
    let opts = CompileOptions {
        self_addresses: vec!["MailRoute-Relay.mail.svc.".into()],
    };
    let c = compile(&o, &opts);
    assert_eq!(decide(&c, "joe@example.com", false), reply("451 4.4.6"));
    // Without knowing itself, the relay would forward (and the mail would loop).
    let c = build(&o);
    assert_eq!(decide(&c, "joe@example.com", false).0, "forward");
}

#[test]
fn trace_tells_the_story() {
    let mut o = alias_table();
    o.address_spaces
        .push(alias_domain("net", "example.net", "example.com"));
    let c = build(&o);
    let (d, steps) = c.routing.trace("Ann@example.net", false);
    assert_eq!(d.action(), "forward");
    assert_eq!(
        steps,
        vec![
            "example.net is accepted by AddressSpace/net (example.net, alias domain of example.com)",
            "no contact has ann@example.net: rewritten to Ann@example.com",
            "example.com is accepted by AddressSpace/example (example.com, Authoritative)",
            "ann@example.com is an address of MailContact/ann: rewritten to ann@mbx1.example.com",
            "mbx1.example.com is not a domain of ours",
            "the recipient was accepted before it was rewritten, so it is routed onward",
            "SmtpConnector/mbx1 covers mbx1.example.com (address space mbx1.example.com, cost 1): next hop [10.0.0.11]",
        ]
    );
}

/// The gateway pattern: an authoritative space served by a connector, its
/// known recipients contacts without a target.
fn gateway() -> Objects {
    let mut o = Objects::default();
    o.address_spaces
        .push(authoritative("example", "example.com"));
    o.connectors.push(connector(
        "mailbox",
        &[("example.com", 1)],
        &["[10.0.0.40]"],
    ));
    o.contacts.push(recipient(
        "ann",
        &["ann@example.com", "Ann.Smith@example.com"],
    ));
    o.contacts.push(contact(
        "postmaster",
        &["postmaster@example.com"],
        "ann@example.com",
    ));
    o.contacts.push(contact(
        "outside",
        &["far@example.com"],
        "Someone@Elsewhere.org",
    ));
    o
}

#[test]
fn a_known_recipient_without_a_target_is_forwarded_as_addressed() {
    let c = build(&gateway());
    // As the sender spelled it.
    assert_eq!(
        decide(&c, "ANN.smith@Example.COM", false),
        fwd("mailbox", "ANN.smith@Example.COM")
    );
    assert_eq!(
        decide(&c, "ann@example.com", false),
        fwd("mailbox", "ann@example.com")
    );
    // A contact that rewrites to a known recipient: the rewritten address.
    assert_eq!(
        decide(&c, "postmaster@example.com", false),
        fwd("mailbox", "ann@example.com")
    );
    // Everyone else in the authoritative space is refused.
    assert_eq!(decide(&c, "nobody@example.com", false), reply("550 5.1.1"));
    // A target outside: no connector covers it (only the relay networks'
    // way out would), so it waits.
    assert_eq!(decide(&c, "far@example.com", false), reply("451 4.4.0"));
    let (_, steps) = c.routing.trace("ann@example.com", false);
    assert!(
        steps
            .iter()
            .any(|s| s.contains("MailContact/ann, a recipient known here: forwarded as addressed")),
        "{steps:?}"
    );
}

#[test]
fn a_known_recipient_with_no_connector_waits() {
    let mut o = gateway();
    o.connectors.clear();
    let c = build(&o);
    assert_eq!(decide(&c, "ann@example.com", false), reply("451 4.4.0"));
}
