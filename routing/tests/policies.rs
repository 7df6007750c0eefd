//! Recipient policies (docs/design.md, "The API"): selection, priority, templates.

use routing::crd::Kind;
use routing::fixtures::*;
use routing::{CompileOptions, Compiled, Objects, compile};

fn base() -> Objects {
    let mut o = Objects::default();
    o.address_spaces
        .push(authoritative("example", "example.com"));
    o.address_spaces
        .push(authoritative("example-net", "example.net"));
    o.connectors
        .push(connector("mbx", &[("mbx.example.com", 1)], &["[10.0.0.1]"]));
    o
}

fn build(o: &Objects) -> Compiled {
    compile(o, &CompileOptions::default())
}

fn addresses(c: &Compiled, contact: &str) -> (Option<String>, Vec<String>) {
    let r = c.report(Kind::MailContact, contact).unwrap();
    (r.primary_address.clone(), r.addresses.clone())
}

#[test]
fn highest_priority_selecting_policy_stamps_its_templates() {
    let mut o = base();
    o.policies
        .push(policy("default", 100, &["%g.%s@example.com"], None));
    o.policies.push(policy(
        "sales",
        10,
        &["%1g%s@example.net", "%g@example.com"],
        match_labels(&[("dept", "sales")]),
    ));
    o.contacts.push(labelled(
        person("ann", "Ann", "Lee", "ann@mbx.example.com"),
        &[("dept", "sales")],
    ));
    o.contacts
        .push(person("bob", "Bob", "Marsh", "bob@mbx.example.com"));
    let c = build(&o);
    assert_eq!(
        addresses(&c, "ann"),
        (
            Some("alee@example.net".into()),
            vec!["alee@example.net".into(), "ann@example.com".into()]
        )
    );
    assert_eq!(
        addresses(&c, "bob"),
        (
            Some("bob.marsh@example.com".into()),
            vec!["bob.marsh@example.com".into()]
        )
    );
    assert_eq!(
        c.report(Kind::RecipientPolicy, "sales").unwrap().conditions[0].message,
        "stamps addresses onto 1 contact(s)"
    );
    assert_eq!(
        c.routing.resolve("ALee@example.net", false).action(),
        "forward"
    );
}

#[test]
fn priority_ties_go_to_the_older_policy_then_the_name() {
    let mut o = base();
    let mut young = policy("a-young", 5, &["young.%m@example.com"], None);
    created(&mut young.metadata, 9);
    let mut old = policy("z-old", 5, &["old.%m@example.com"], None);
    created(&mut old.metadata, 1);
    o.policies.push(young);
    o.policies.push(old);
    let mut c = contact("c", &[], "c@mbx.example.com");
    c.spec.alias = Some("cee".into());
    o.contacts.push(c);
    assert_eq!(
        addresses(&build(&o), "c").0.as_deref(),
        Some("old.cee@example.com")
    );
    for p in &mut o.policies {
        p.metadata.creation_timestamp = None;
    }
    assert_eq!(
        addresses(&build(&o), "c").0.as_deref(),
        Some("young.cee@example.com")
    );
}

#[test]
fn contacts_can_opt_out_and_keep_their_proxy_addresses() {
    let mut o = base();
    o.policies
        .push(policy("default", 1, &["%g@example.com"], None));
    let mut c = person("ann", "Ann", "Lee", "ann@mbx.example.com");
    c.spec.proxy_addresses = vec!["Ann.Proxy@Example.com".into()];
    c.spec.apply_recipient_policies = Some(false);
    o.contacts.push(c);
    assert_eq!(
        addresses(&build(&o), "ann"),
        (
            Some("Ann.Proxy@example.com".into()),
            vec!["ann.proxy@example.com".into()]
        )
    );
}

#[test]
fn selectors_with_expressions() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
    let mut o = base();
    let sel = LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "tier".into(),
            operator: "NotIn".into(),
            values: Some(vec!["external".into()]),
        }]),
    };
    o.policies
        .push(policy("internal", 1, &["%g@example.com"], Some(sel)));
    o.contacts.push(labelled(
        person("in", "Ina", "X", "in@mbx.example.com"),
        &[("tier", "staff")],
    ));
    o.contacts.push(labelled(
        person("ex", "Ext", "Y", "ex@mbx.example.com"),
        &[("tier", "external")],
    ));
    let c = build(&o);
    assert_eq!(addresses(&c, "in").1, vec!["ina@example.com"]);
    assert!(addresses(&c, "ex").1.is_empty());
    assert_eq!(
        c.report(Kind::MailContact, "ex").unwrap().conditions[0].message,
        "no address resolves to it; its target is ex@mbx.example.com"
    );
}

#[test]
fn template_incomplete_is_reported_on_policy_and_contact() {
    let mut o = base();
    o.policies.push(policy(
        "p",
        1,
        &["%g.%s@example.com", "%i@example.com"],
        None,
    ));
    o.contacts
        .push(person("full", "Ann", "Lee", "ann@mbx.example.com"));
    let mut partial = contact("partial", &[], "p@mbx.example.com");
    partial.spec.given_name = Some("Pat".into());
    o.contacts.push(partial);
    let c = build(&o);
    let p = c.report(Kind::RecipientPolicy, "p").unwrap();
    assert_eq!(p.conditions[0].reason, "TemplateIncomplete");
    assert!(
        p.conditions[0]
            .message
            .contains("MailContact/partial (\"%g.%s@example.com\": lacks surname)"),
        "{}",
        p.conditions[0].message
    );
    assert!(
        p.conditions[0]
            .message
            .contains("MailContact/full (\"%i@example.com\": lacks initials)")
    );
    let partial = c.report(Kind::MailContact, "partial").unwrap();
    assert_eq!(partial.conditions[0].reason, "TemplateIncomplete");
    // No primary from the policy and no proxies: no primary at all.
    assert_eq!(partial.primary_address, None);
}

#[test]
fn policy_messages_stay_short_with_many_contacts() {
    let mut o = base();
    o.policies.push(policy("p", 1, &["%s@example.com"], None));
    for i in 0..50 {
        o.contacts
            .push(contact(&format!("c{i:02}"), &[], "x@mbx.example.com"));
    }
    let c = build(&o);
    let msg = &c.report(Kind::RecipientPolicy, "p").unwrap().conditions[0].message;
    assert!(
        msg.contains("50 selected contact(s)") && msg.ends_with("and 40 more"),
        "{msg}"
    );
}
