//! SendingGrants: the schema, the compiler (claims, references,
//! conditions), the published form, and every decision about a client's
//! rights — without sockets.

use kube::CustomResourceExt;
use kube::core::cel::Validator;
use routing::address::Address;
use routing::crd::{Kind, SendingGrant};
use routing::fixtures::*;
use routing::grants::cidr::parse_list;
use routing::grants::{ClusterFacts, Grants, Refusal, Rights};
use routing::table::{encode, load};
use routing::{CompileOptions, Objects, compile};
use serde_json::{Value, json};
use std::net::IpAddr;

fn objects(grants: Vec<SendingGrant>) -> Objects {
    Objects {
        address_spaces: vec![authoritative("corp", "example.com")],
        grants,
        ..Objects::default()
    }
}

fn conditions(o: &Objects, name: &str) -> Vec<(String, String, String)> {
    let c = compile(o, &CompileOptions::default());
    let r = c.report(Kind::SendingGrant, name).expect("a report");
    r.conditions
        .iter()
        .map(|c| {
            (
                c.type_.to_owned(),
                c.status_str().to_owned(),
                c.message.to_string(),
            )
        })
        .collect()
}

fn ready(o: &Objects, name: &str) -> (String, String) {
    let c = conditions(o, name);
    (c[0].1.clone(), c[0].2.clone())
}

fn cel_errors(object: Value) -> Vec<String> {
    let crd = SendingGrant::crd();
    let schema = serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    match Validator::new().validate(&schema, &object, None) {
        Ok(()) => vec![],
        Err(errors) => errors.iter().map(|e| e.message.clone()).collect(),
    }
}

#[test]
fn the_schema_wants_exactly_one_kind_of_principal() {
    let grant = |p: Value| {
        json!({"apiVersion": "mailroute.io/v1alpha1", "kind": "SendingGrant", "metadata": {"name": "g"},
               "spec": {"principals": [p]}})
    };
    assert!(cel_errors(grant(json!({"network": "10.0.0.0/8"}))).is_empty());
    assert!(cel_errors(grant(json!({"serviceAccount": {"namespace": "apps"}}))).is_empty());
    for bad in [
        json!({}),
        json!({"network": "10.0.0.0/8", "passwordSecret": {"name": "s"}}),
    ] {
        assert_eq!(
            cel_errors(grant(bad)),
            [
                "a principal is exactly one of serviceAccount, passwordSecret, clientCertificate and network"
            ]
        );
    }
    assert_eq!(
        cel_errors(grant(
            json!({"clientCertificate": {"subject": "CN=a", "dnsName": "a.example"}})
        )),
        ["exactly one of subject and dnsName must be set"]
    );
}

#[test]
fn a_valid_grant_is_ready_and_says_what_it_grants() {
    let o = objects(vec![grant(
        "billing",
        vec![service_account("billing/app"), network("10.1.2.3/16")],
        &["*"],
        &["NoReply@Example.com", "*.example.com"],
        Some(100),
    )]);
    assert_eq!(
        ready(&o, "billing"),
        (
            "True".into(),
            "2 principal(s) may send: relay to *, as noreply@example.com, *.example.com, 100 message(s) per minute".into()
        )
    );
    let c = compile(&o, &CompileOptions::default());
    let g = &c.table().grants[0];
    assert_eq!(
        g.principals
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>(),
        ["ServiceAccount billing/app", "network 10.1.0.0/16"]
    );
}

#[test]
fn invalid_specs_name_the_field() {
    let cases = [
        (
            grant("g", vec![network("10.0.0.0/33")], &[], &[], None),
            "spec.principals[0].network: \"10.0.0.0/33\": prefix must be 0 to 32",
        ),
        (
            grant(
                "g",
                vec![network("10.0.0.1"), network("10.0.0.1/32")],
                &[],
                &[],
                None,
            ),
            "spec.principals: network 10.0.0.1/32 is listed twice",
        ),
        (
            grant(
                "g",
                vec![service_account("apps")],
                &["exa mple.com"],
                &[],
                None,
            ),
            "spec.relayDomains[0] \"exa mple.com\"",
        ),
        (
            grant("g", vec![service_account("apps")], &[], &["a@"], None),
            "spec.senders[0] \"a@\"",
        ),
        (
            grant("g", vec![service_account("apps")], &[], &["*"], None),
            "spec.senders[0] \"*\"",
        ),
        (
            grant("g", vec![], &[], &[], None),
            "spec.principals: at least one is required",
        ),
    ];
    for (g, want) in cases {
        let (status, message) = ready(&objects(vec![g]), "g");
        assert_eq!(status, "False");
        assert!(message.contains(want), "{message}\nwants {want}");
    }
}

#[test]
fn a_principal_belongs_to_its_oldest_grant() {
    let mut old = grant(
        "old",
        vec![service_account("apps/a"), network("10.0.0.0/8")],
        &[],
        &[],
        None,
    );
    created(&mut old.metadata, 1);
    let mut new = grant(
        "new",
        vec![service_account("apps/a"), service_account("apps/b")],
        &["*"],
        &[],
        None,
    );
    created(&mut new.metadata, 2);
    let o = objects(vec![new, old]);
    let c = conditions(&o, "new");
    assert_eq!(c[0].1, "False");
    assert_eq!(
        (c[2].0.as_str(), c[2].1.as_str(), c[2].2.as_str()),
        (
            "AuthoritativenessConflict",
            "True",
            "DuplicateGrant: ServiceAccount apps/a is already granted by the older SendingGrant/old; it is left out of this one"
        )
    );
    assert_eq!(ready(&o, "old").0, "True");
    let compiled = compile(&o, &CompileOptions::default());
    let grants = compiled.routing.grants();
    assert_eq!(grants.for_service_account("apps", "a").unwrap().name, "old");
    assert_eq!(grants.for_service_account("apps", "b").unwrap().name, "new");
}

#[test]
fn references_are_checked_against_the_cluster_and_not_offline() {
    let g = grant(
        "g",
        vec![
            service_account("apps/gone"),
            service_account("empty-ns"),
            password_secret("users"),
            password_secret("nokey"),
        ],
        &[],
        &[],
        None,
    );
    let mut o = objects(vec![g]);
    assert_eq!(
        ready(&o, "g").0,
        "True",
        "offline: nothing to check against"
    );
    o.cluster = Some(ClusterFacts {
        service_accounts: [("apps".to_owned(), "app".to_owned())].into(),
        password_secrets: [
            ("users".to_owned(), Some("alice:$2b$04$short\n".to_owned())),
            ("nokey".to_owned(), None),
        ]
        .into(),
    });
    let (status, message) = ready(&o, "g");
    assert_eq!(status, "False");
    for want in [
        "ServiceAccount apps/gone does not exist",
        "namespace empty-ns has no ServiceAccount",
        "Secret nokey has no key htpasswd",
        "Secret users key htpasswd: line 1 (user \"alice\"): a malformed bcrypt hash; that user cannot authenticate",
    ] {
        assert!(message.contains(want), "{message}\nwants {want}");
    }
    assert!(!message.contains("$2b$04$short"), "hashes are never quoted");
    // Still in the table: what works keeps working.
    let c = compile(&o, &CompileOptions::default());
    assert_eq!(c.table().grants.len(), 1);
}

#[test]
fn grants_are_published_by_reference_and_read_back_equal() {
    let o = objects(vec![
        grant(
            "b",
            vec![
                password_secret("smtp-users"),
                certificate_dns_name("App.Example.com"),
            ],
            &["example.net"],
            &[],
            Some(5),
        ),
        grant(
            "a",
            vec![certificate_subject("CN=billing,O=Example")],
            &[],
            &["example.com"],
            None,
        ),
    ]);
    let c = compile(&o, &CompileOptions::default());
    let encoded = encode(c.table());
    assert_eq!(encoded.manifest.counts.grants, 2);
    let json = String::from_utf8(encoded.files["grants.json"].clone()).unwrap();
    assert!(
        json.contains("\"smtp-users\"") && json.contains("app.example.com"),
        "{json}"
    );
    let (_, loaded) = load(|k| encoded.files.get(k).map(Vec::as_slice)).unwrap();
    assert_eq!(loaded.grants, c.table().grants);
    assert_eq!(encode(&loaded), encoded, "same bytes again");
    // No grants: no file, and the manifest reads as before grants existed.
    let plain = encode(
        &compile(&objects(vec![]), &CompileOptions::default())
            .table()
            .clone(),
    );
    assert!(!plain.files.contains_key("grants.json"));
    assert!(!String::from_utf8_lossy(&plain.files["manifest.json"]).contains("grants"));
}

#[test]
fn a_damaged_grants_file_is_refused() {
    let o = objects(vec![grant(
        "a",
        vec![network("10.0.0.0/8")],
        &[],
        &[],
        None,
    )]);
    let encoded = encode(compile(&o, &CompileOptions::default()).table());
    let mut files = encoded.files.clone();
    files.insert("grants.json".into(), b"{\"grants\":[]}\n".to_vec());
    let err = load(|k| files.get(k).map(Vec::as_slice)).unwrap_err();
    assert!(
        err.to_string().starts_with("grants.json: SHA-256 differs"),
        "{err}"
    );
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn index(grants: Vec<SendingGrant>) -> Grants {
    let c = compile(&objects(grants), &CompileOptions::default());
    c.routing.grants().clone()
}

#[test]
fn an_unauthenticated_client_gets_the_most_specific_network() {
    let grants = index(vec![
        grant("wide", vec![network("10.0.0.0/8")], &["*"], &[], None),
        grant(
            "narrow",
            vec![network("10.1.0.0/16")],
            &[],
            &["example.com"],
            Some(10),
        ),
        grant(
            "certs",
            vec![
                certificate_subject("CN=app"),
                certificate_dns_name("app.example.com"),
            ],
            &["*"],
            &[],
            None,
        ),
    ]);
    let relay = parse_list("10.1.2.0/24,127.0.0.0/8").unwrap();
    let rights = |addr: &str, cert: Option<(&str, &[String])>| {
        Rights::unauthenticated(&grants, &relay, ip(addr), cert)
    };
    assert_eq!(rights("10.9.9.9", None).principal(), "network:10.0.0.0/8");
    assert_eq!(rights("10.1.9.9", None).principal(), "network:10.1.0.0/16");
    assert_eq!(
        rights("10.1.2.3", None),
        Rights::RelayNetwork,
        "the relay networks' /24 is more specific"
    );
    assert_eq!(rights("::ffff:127.0.0.1", None), Rights::RelayNetwork);
    assert_eq!(rights("192.0.2.1", None), Rights::Anonymous);
    let names = ["other.example.com".to_owned(), "APP.example.com".to_owned()];
    assert_eq!(
        rights("192.0.2.1", Some(("CN=x", &names))).principal(),
        "certificate:CN=x"
    );
    assert_eq!(
        rights("192.0.2.1", Some(("CN=app", &[])))
            .grant()
            .unwrap()
            .name,
        "certs"
    );
    assert_eq!(
        rights("192.0.2.1", Some(("cn = app", &[])))
            .grant()
            .unwrap()
            .name,
        "certs",
        "subjects compare normalised"
    );
    assert_eq!(
        rights("192.0.2.1", Some(("CN=nobody", &[]))),
        Rights::Anonymous
    );
    // A tie between a grant's network and the relay networks: the grant.
    let tie = parse_list("10.1.0.0/16").unwrap();
    assert_eq!(
        Rights::unauthenticated(&grants, &tie, ip("10.1.9.9"), None).principal(),
        "network:10.1.0.0/16"
    );
}

#[test]
fn a_service_account_gets_its_own_grant_before_its_namespace_s() {
    let grants = index(vec![
        grant("ns", vec![service_account("apps")], &[], &[], None),
        grant(
            "one",
            vec![service_account("apps/billing")],
            &["*"],
            &[],
            None,
        ),
    ]);
    assert_eq!(
        Rights::service_account(&grants, "apps", "billing")
            .unwrap()
            .grant()
            .unwrap()
            .name,
        "one"
    );
    assert_eq!(
        Rights::service_account(&grants, "apps", "other")
            .unwrap()
            .principal(),
        "serviceaccount:apps/other"
    );
    assert_eq!(Rights::service_account(&grants, "default", "billing"), None);
}

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

#[test]
fn what_a_grant_allows() {
    let mut g = grant(
        "g",
        vec![service_account("apps/a")],
        &["partner.net", "*.example.org"],
        &[
            "noreply@example.com",
            "news.example.com",
            "*.lists.example.com",
        ],
        Some(3),
    );
    g.spec.max_recipients_per_message = Some(2);
    let grants = index(vec![g]);
    let r = Rights::service_account(&grants, "apps", "a").unwrap();
    assert!(r.may_relay_to("partner.net"));
    assert!(r.may_relay_to("a.b.example.org"));
    assert!(!r.may_relay_to("example.org"));
    assert!(!r.may_relay_to("gmail.com"));
    assert!(!r.trusted());
    assert_eq!(r.check_sender(Some(&addr("NoReply@example.com"))), Ok(()));
    assert_eq!(
        r.check_sender(Some(&addr("anyone@news.example.com"))),
        Ok(())
    );
    assert_eq!(
        r.check_sender(Some(&addr("x@team.lists.example.com"))),
        Ok(())
    );
    assert_eq!(r.check_sender(None), Ok(()), "the null sender");
    for bad in [
        "ceo@example.com",
        "x@lists.example.com",
        "noreply@example.com.evil.net",
    ] {
        assert_eq!(
            r.check_sender(Some(&addr(bad))),
            Err(Refusal::SenderNotAllowed),
            "{bad}"
        );
    }
    assert_eq!(r.check_header_from(&[addr("noreply@example.com")]), Ok(()));
    assert_eq!(
        r.check_header_from(&[addr("noreply@example.com"), addr("ceo@example.com")]),
        Err(Refusal::HeaderFromNotAllowed)
    );
    assert_eq!(r.check_recipient_count(2, 100), Ok(()));
    assert_eq!(
        r.check_recipient_count(3, 100),
        Err(Refusal::TooManyRecipients)
    );
    assert_eq!(
        r.check_recipient_count(2, 1),
        Err(Refusal::TooManyRecipients),
        "the relay's limit still holds"
    );
    assert_eq!(r.rate(), Some(("serviceaccount:apps/a", 3)));
    let refusals = [
        Refusal::SenderNotAllowed,
        Refusal::HeaderFromNotAllowed,
        Refusal::RateExceeded,
        Refusal::TooManyRecipients,
    ];
    let replies: Vec<(u16, &str)> = refusals.iter().map(|r| (r.code(), r.enhanced())).collect();
    assert_eq!(
        replies,
        [
            (553, "5.7.1"),
            (553, "5.7.1"),
            (450, "4.7.1"),
            (452, "4.5.3")
        ]
    );
}

#[test]
fn without_a_grant_nothing_changes() {
    for r in [Rights::Anonymous, Rights::RelayNetwork] {
        assert_eq!(
            r.check_sender(Some(&addr("anyone@anywhere.example"))),
            Ok(())
        );
        assert_eq!(r.check_recipient_count(100, 100), Ok(()));
        assert_eq!(r.rate(), None);
    }
    assert!(!Rights::Anonymous.may_relay_to("gmail.com"));
    assert!(Rights::RelayNetwork.may_relay_to("gmail.com"));
    assert!(Rights::RelayNetwork.trusted());
}
