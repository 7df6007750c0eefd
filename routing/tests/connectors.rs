//! Connector selection (docs/design.md, "The API" SmtpConnector): specificity, then
//! cost, then name; disabled connectors never; no fall-back.

use routing::fixtures::*;
use routing::{CompileOptions, Decision, Objects, compile};

fn chosen(o: &Objects, domain: &str) -> Option<String> {
    let c = compile(o, &CompileOptions::default());
    match c.routing.resolve(&format!("x@{domain}"), true) {
        Decision::Forward { connector, .. } => Some(c.routing.connector(connector).name.clone()),
        Decision::Reply(_) => None,
    }
}

fn scenario5() -> Objects {
    let mut o = Objects::default();
    o.connectors
        .push(connector("a", &[("*.corp.example", 1)], &["[10.5.0.1]"]));
    o.connectors
        .push(connector("b", &[("eu.corp.example", 1)], &["[10.5.0.2]"]));
    o.connectors.push(connector(
        "deep",
        &[("*.x.eu.corp.example", 1)],
        &["[10.5.0.4]"],
    ));
    o.connectors.push(connector("internet", &[("*", 1)], &[]));
    o
}

#[test]
fn exact_beats_longer_wildcard_beats_shorter_wildcard_beats_any() {
    let o = scenario5();
    assert_eq!(chosen(&o, "eu.corp.example").as_deref(), Some("b"));
    assert_eq!(chosen(&o, "a.eu.corp.example").as_deref(), Some("a"));
    assert_eq!(chosen(&o, "y.x.eu.corp.example").as_deref(), Some("deep"));
    assert_eq!(chosen(&o, "x.eu.corp.example").as_deref(), Some("a"));
    assert_eq!(chosen(&o, "corp.example").as_deref(), Some("internet"));
    assert_eq!(chosen(&o, "badcorp.example").as_deref(), Some("internet"));
    assert_eq!(chosen(&o, "eucorp.example").as_deref(), Some("internet"));
}

#[test]
fn ties_go_to_lowest_cost_then_name() {
    let mut o = Objects::default();
    o.connectors
        .push(connector("zeta", &[("example.com", 1)], &["[10.0.0.1]"]));
    o.connectors
        .push(connector("alpha", &[("example.com", 2)], &["[10.0.0.2]"]));
    assert_eq!(chosen(&o, "example.com").as_deref(), Some("zeta"));
    o.connectors
        .push(connector("beta", &[("example.com", 1)], &["[10.0.0.3]"]));
    assert_eq!(chosen(&o, "example.com").as_deref(), Some("beta"));
    // Cost never beats specificity.
    o.connectors
        .push(connector("cheap-wild", &[("*.com", 1)], &["[10.0.0.4]"]));
    o.connectors[0].spec.address_spaces[0].cost = Some(100);
    o.connectors[2].spec.address_spaces[0].cost = Some(100);
    assert_eq!(chosen(&o, "example.com").as_deref(), Some("alpha"));
}

#[test]
fn disabled_connectors_are_never_selected_and_there_is_no_fall_back() {
    let mut o = Objects::default();
    let mut specific = connector("specific", &[("example.com", 1)], &["[10.0.0.1]"]);
    o.connectors.push(connector("internet", &[("*", 1)], &[]));
    assert_eq!(chosen(&o, "example.com").as_deref(), Some("internet"));
    o.connectors.push(specific.clone());
    assert_eq!(chosen(&o, "example.com").as_deref(), Some("specific"));
    specific.spec.enabled = Some(false);
    o.connectors[1] = specific;
    assert_eq!(chosen(&o, "example.com").as_deref(), Some("internet"));
    let c = compile(&o, &CompileOptions::default());
    let r = c
        .report(routing::crd::Kind::SmtpConnector, "specific")
        .unwrap();
    assert!(r.is_ready());
    assert_eq!(r.conditions[0].message, "disabled: never selected");
}

#[test]
fn one_connector_can_serve_several_spaces_at_different_costs() {
    let mut o = Objects::default();
    o.connectors.push(connector(
        "a",
        &[("one.example", 5), ("two.example", 1)],
        &["[10.0.0.1]"],
    ));
    o.connectors.push(connector(
        "b",
        &[("one.example", 1), ("two.example", 5)],
        &["[10.0.0.2]"],
    ));
    assert_eq!(chosen(&o, "one.example").as_deref(), Some("b"));
    assert_eq!(chosen(&o, "two.example").as_deref(), Some("a"));
}

#[test]
fn connector_settings_reach_the_table() {
    let mut o = Objects::default();
    let mut c = connector(
        "tls",
        &[("*", 1)],
        &["[10.0.0.1]:2525", "backup.example.net"],
    );
    c.spec.tls = Some(routing::crd::TlsSettings {
        mode: Some(routing::crd::TlsMode::Required),
        verify: None,
    });
    c.spec.auth_secret_ref = Some(routing::crd::SecretRef {
        name: "smarthost-auth".into(),
    });
    c.spec.max_message_size = Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
        "25Mi".into(),
    ));
    o.connectors.push(c);
    let compiled = compile(&o, &CompileOptions::default());
    let route = &compiled.table().connectors[0];
    assert_eq!(route.tls_mode, routing::crd::TlsMode::Required);
    assert!(route.tls_verify);
    assert_eq!(route.auth_secret.as_deref(), Some("smarthost-auth"));
    assert_eq!(route.max_message_size, Some(25 << 20));
    assert_eq!(
        route.hosts_display(),
        vec!["[10.0.0.1]:2525", "backup.example.net"]
    );
    assert!(!route.smart_hosts[0].mx_lookup);
    assert!(route.smart_hosts[1].mx_lookup);
}

#[test]
fn invalid_connectors_are_reported_and_left_out() {
    type Case<'a> = (&'a [(&'a str, u32)], &'a [&'a str], &'a str);
    let cases: &[Case] = &[
        (&[("exa mple.com", 1)], &[], "spec.addressSpaces[0].domain"),
        (&[("*.*.com", 1)], &[], "spec.addressSpaces[0].domain"),
        (&[("a.com", 0)], &[], "spec.addressSpaces[0].cost"),
        (&[("a.com", 101)], &[], "spec.addressSpaces[0].cost"),
        (
            &[("a.com", 1), ("A.com", 2)],
            &[],
            "spec.addressSpaces[1].domain",
        ),
        (&[], &[], "spec.addressSpaces"),
        (&[("a.com", 1)], &["10.0.0.1"], "spec.smartHosts[0]"),
        (&[("a.com", 1)], &["[10.0.0.1]:0"], "spec.smartHosts[0]"),
    ];
    for (spaces, hosts, field) in cases {
        let mut o = Objects::default();
        o.connectors.push(connector("bad", spaces, hosts));
        let c = compile(&o, &CompileOptions::default());
        let r = c.report(routing::crd::Kind::SmtpConnector, "bad").unwrap();
        assert_eq!(r.conditions[0].reason, "InvalidSpec", "{field}");
        assert!(
            r.conditions[0].message.contains(field),
            "{field}: {}",
            r.conditions[0].message
        );
        assert!(c.table().connectors.is_empty());
    }
}
