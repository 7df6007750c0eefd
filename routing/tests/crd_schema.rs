//! The schema refuses what it can: CEL rules evaluated with kube's `cel`
//! feature against the generated CRDs, plus the patterns and enums.

use kube::CustomResourceExt;
use kube::core::cel::Validator;
use routing::crd::{AddressSpace, RecipientPolicy};
use serde_json::{Value, json};

fn schema<K: CustomResourceExt>() -> Value {
    let crd = K::crd();
    let v = &crd.spec.versions[0];
    serde_json::to_value(
        v.schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

fn cel_errors<K: CustomResourceExt>(object: Value) -> Vec<String> {
    match Validator::new().validate(&schema::<K>(), &object, None) {
        Ok(()) => vec![],
        Err(errors) => errors.iter().map(|e| e.message.clone()).collect(),
    }
}

fn space(spec: Value) -> Value {
    json!({"apiVersion": "mailroute.io/v1alpha1", "kind": "AddressSpace", "metadata": {"name": "s"}, "spec": spec})
}

#[test]
fn address_space_needs_exactly_one_of_type_and_rewrite_to() {
    assert!(
        cel_errors::<AddressSpace>(space(json!({"domain": "a.com", "type": "Authoritative"})))
            .is_empty()
    );
    assert!(
        cel_errors::<AddressSpace>(space(json!({"domain": "a.com", "rewriteTo": "b.com"})))
            .is_empty()
    );
    for bad in [
        json!({"domain": "a.com"}),
        json!({"domain": "a.com", "type": "Authoritative", "rewriteTo": "b.com"}),
    ] {
        assert_eq!(
            cel_errors::<AddressSpace>(space(bad)),
            vec!["exactly one of type and rewriteTo must be set"]
        );
    }
}

#[test]
fn recipient_policy_needs_exactly_one_primary_template() {
    let policy = |templates: Value| {
        json!({"apiVersion": "mailroute.io/v1alpha1", "kind": "RecipientPolicy", "metadata": {"name": "p"},
               "spec": {"priority": 1, "addressTemplates": templates}})
    };
    let one = json!([{"template": "%g@a.com", "primary": true}, {"template": "%s@a.com"}]);
    assert!(cel_errors::<RecipientPolicy>(policy(one)).is_empty());
    let none = json!([{"template": "%g@a.com"}, {"template": "%s@a.com", "primary": false}]);
    let two = json!([{"template": "%g@a.com", "primary": true}, {"template": "%s@a.com", "primary": true}]);
    for bad in [none, two] {
        assert_eq!(
            cel_errors::<RecipientPolicy>(policy(bad)),
            vec!["exactly one address template must be primary"]
        );
    }
}

fn property<'a>(schema: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(schema, |s, p| {
        let s = if s["type"] == "array" { &s["items"] } else { s };
        &s["properties"][p]
    })
}

#[test]
fn schema_carries_patterns_enums_and_limits() {
    let s = schema::<AddressSpace>();
    let domain = property(&s, &["spec", "domain"]);
    assert!(
        domain["pattern"]
            .as_str()
            .unwrap()
            .starts_with("^(\\*\\.)?")
    );
    assert_eq!(domain["maxLength"], 253);
    assert_eq!(
        property(&s, &["spec", "type"])["enum"],
        json!(["Authoritative", "InternalRelay", "ExternalRelay"])
    );

    let s = schema::<routing::crd::SmtpConnector>();
    assert_eq!(property(&s, &["spec", "addressSpaces"])["minItems"], 1);
    let cost = property(&s, &["spec", "addressSpaces", "cost"]);
    assert_eq!(
        (cost["minimum"].as_f64(), cost["maximum"].as_f64()),
        (Some(1.0), Some(100.0))
    );
    // Optional enums also admit null (kube marks them nullable).
    let modes: Vec<&Value> = property(&s, &["spec", "tls", "mode"])["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| !v.is_null())
        .collect();
    assert_eq!(
        modes,
        [&json!("None"), &json!("Opportunistic"), &json!("Required")]
    );
    assert!(property(&s, &["spec", "smartHosts"])["items"]["pattern"].is_string());

    let s = schema::<routing::crd::MailContact>();
    assert!(property(&s, &["spec", "targetAddress"])["pattern"].is_string());
    assert_eq!(s["required"], json!(["spec"]));
}

#[test]
fn every_kind_has_status_columns_short_name_and_category() {
    for crd in routing::crd::crds() {
        let names = &crd.spec.names;
        assert_eq!(crd.spec.group, "mailroute.io");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(
            names.categories.as_deref(),
            Some(&["mailroute".to_string()][..])
        );
        assert_eq!(names.short_names.as_ref().map(Vec::len), Some(1));
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.subresources.as_ref().unwrap().status.is_some());
        let cols: Vec<&str> = v
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        let needed: &[&str] = if names.kind == "RoutingTable" {
            &["Generation", "Relays", "Problems", "Age"]
        } else {
            &["Ready", "LoopRisk", "Conflict", "Age"]
        };
        for needed in needed {
            assert!(cols.contains(needed), "{}: {cols:?}", names.kind);
        }
    }
}

/// Each relay pod owns its own entry of `status.relays` by server-side
/// apply: that needs a list map keyed by pod.
#[test]
fn the_relays_list_is_a_map_keyed_by_pod() {
    let s = schema::<routing::crd::RoutingTable>();
    let relays = property(&s, &["status", "relays"]);
    assert_eq!(relays["x-kubernetes-list-type"], "map");
    assert_eq!(relays["x-kubernetes-list-map-keys"], json!(["pod"]));
    assert_eq!(relays["items"]["required"], json!(["pod"]));
}

/// The API server evaluates patterns with RE2; these patterns use only the
/// syntax RE2 and Rust's `regex` share, so they are checked here as written
/// in the CRD.
#[test]
fn schema_patterns_accept_valid_values_and_refuse_malformed_ones() {
    let check = |s: &Value, path: &[&str], good: &[&str], bad: &[&str]| {
        let p = property(s, path);
        let p = if p["type"] == "array" { &p["items"] } else { p };
        let re = regex::Regex::new(p["pattern"].as_str().unwrap()).unwrap();
        for g in good {
            assert!(re.is_match(g), "{path:?} should accept {g:?}");
        }
        for b in bad {
            assert!(!re.is_match(b), "{path:?} should refuse {b:?}");
        }
    };
    let s = schema::<AddressSpace>();
    check(
        &s,
        &["spec", "domain"],
        &["example.com", "*.example.com", "Bücher.Example", "x"],
        &[
            "*",
            "*.*.com",
            "a.*.com",
            "a..com",
            ".a.com",
            "a.com.",
            "a b.com",
            "a@b.com",
            "[1.2.3.4]",
        ],
    );
    check(
        &s,
        &["spec", "rewriteTo"],
        &["example.com"],
        &["*.example.com", "a..b"],
    );
    let s = schema::<routing::crd::SmtpConnector>();
    check(
        &s,
        &["spec", "addressSpaces", "domain"],
        &["*", "*.corp.example", "eu.corp.example"],
        &["**", "*.", "a.*"],
    );
    check(
        &s,
        &["spec", "smartHosts"],
        &[
            "[10.0.0.1]",
            "[10.0.0.1]:2525",
            "mail.example.com",
            "mail.example.com:587",
            "[IPv6:2001:db8::1]:25",
        ],
        &["mail example.com", "[10.0.0.1", "host:port", "a:1:2"],
    );
    let s = schema::<routing::crd::MailContact>();
    check(
        &s,
        &["spec", "targetAddress"],
        &["ann@example.com", "\"ann lee\"@x.org"],
        &["ann", "ann@", "@x.org", "a@b@c"],
    );
    check(
        &s,
        &["spec", "proxyAddresses"],
        &["ann@example.com"],
        &["ann example.com"],
    );
    let s = schema::<RecipientPolicy>();
    check(
        &s,
        &["spec", "addressTemplates", "template"],
        &["%g.%s@example.com", "%r.-%1g%s@a.example"],
        &["%g", "%g@%d.com", "%g@*.example.com"],
    );
}
