//! Builders for objects in tests and benchmarks: short to write, and every
//! field that matters in one call.

use crate::Objects;
use crate::crd::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use std::collections::BTreeMap;

/// The size a benchmark or scale example works at: `n`, or at most 10,000
/// under `MAILROUTE_SMOKE=1`, with which the docs check runs every
/// documented benchmark command to prove it works (in seconds, not minutes).
pub fn smoke_size(n: usize) -> usize {
    if std::env::var_os("MAILROUTE_SMOKE").is_some_and(|v| v == "1") && n > 10_000 {
        eprintln!("(smoke run: 10000 instead of {n})");
        10_000
    } else {
        n
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        generation: Some(1),
        ..Default::default()
    }
}

/// `creationTimestamp` at `day` days after 2026-01-01, for "oldest wins" tests.
pub fn created(meta: &mut ObjectMeta, day: i64) {
    let base: k8s_openapi::jiff::Timestamp =
        "2026-01-01T00:00:00Z".parse().expect("valid timestamp");
    let t = base
        .checked_add(k8s_openapi::jiff::SignedDuration::from_hours(24 * day))
        .expect("in range");
    meta.creation_timestamp = Some(Time(t));
}

pub fn space(name: &str, domain: &str, t: AddressSpaceType) -> AddressSpace {
    AddressSpace {
        metadata: meta(name),
        spec: AddressSpaceSpec {
            domain: domain.into(),
            r#type: Some(t),
            rewrite_to: None,
        },
        status: None,
    }
}

pub fn authoritative(name: &str, domain: &str) -> AddressSpace {
    space(name, domain, AddressSpaceType::Authoritative)
}

pub fn internal_relay(name: &str, domain: &str) -> AddressSpace {
    space(name, domain, AddressSpaceType::InternalRelay)
}

pub fn alias_domain(name: &str, domain: &str, to: &str) -> AddressSpace {
    AddressSpace {
        metadata: meta(name),
        spec: AddressSpaceSpec {
            domain: domain.into(),
            r#type: None,
            rewrite_to: Some(to.into()),
        },
        status: None,
    }
}

pub fn contact(name: &str, proxies: &[&str], target: &str) -> MailContact {
    MailContact {
        metadata: meta(name),
        spec: MailContactSpec {
            target_address: Some(target.into()),
            proxy_addresses: proxies.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
        status: None,
    }
}

/// A contact without a target: a recipient forwarded as addressed.
pub fn recipient(name: &str, proxies: &[&str]) -> MailContact {
    let mut c = contact(name, proxies, "unused@example.invalid");
    c.spec.target_address = None;
    c
}

/// A contact with given name and surname, for policies.
pub fn person(name: &str, given: &str, surname: &str, target: &str) -> MailContact {
    let mut c = contact(name, &[], target);
    c.spec.given_name = Some(given.into());
    c.spec.surname = Some(surname.into());
    c
}

pub fn labelled(mut c: MailContact, labels: &[(&str, &str)]) -> MailContact {
    let map: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    c.metadata.labels = Some(map);
    c
}

/// A connector; `spaces` are `(domain, cost)`.
pub fn connector(name: &str, spaces: &[(&str, u32)], hosts: &[&str]) -> SmtpConnector {
    SmtpConnector {
        metadata: meta(name),
        spec: SmtpConnectorSpec {
            address_spaces: spaces
                .iter()
                .map(|(d, c)| ConnectorAddressSpace {
                    domain: d.to_string(),
                    cost: Some(*c),
                })
                .collect(),
            smart_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            tls: None,
            auth_secret_ref: None,
            max_message_size: None,
            enabled: None,
        },
        status: None,
    }
}

/// A policy; the first template is primary.
pub fn policy(
    name: &str,
    priority: i32,
    templates: &[&str],
    selector: Option<LabelSelector>,
) -> RecipientPolicy {
    RecipientPolicy {
        metadata: meta(name),
        spec: RecipientPolicySpec {
            selector,
            priority,
            address_templates: templates
                .iter()
                .enumerate()
                .map(|(i, t)| AddressTemplate {
                    template: t.to_string(),
                    primary: Some(i == 0),
                })
                .collect(),
        },
        status: None,
    }
}

pub fn match_labels(labels: &[(&str, &str)]) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        match_expressions: None,
    })
}

/// An organisation with one of everything and a loop risk: ann@example.com
/// homed on mbx1, and the internal-relay space corp.example sent to
/// `relay_host`, which the operator tests make one of the relay's own names.
pub fn small_org_through(relay_host: &str) -> Objects {
    let mut o = Objects::default();
    o.address_spaces
        .push(authoritative("example-com", "example.com"));
    o.address_spaces
        .push(internal_relay("corp", "corp.example"));
    o.contacts
        .push(contact("ann", &["ann@example.com"], "ann@mbx1.example.com"));
    o.connectors.push(connector(
        "mbx1",
        &[("mbx1.example.com", 1)],
        &["[192.0.2.11]"],
    ));
    o.connectors
        .push(connector("unix", &[("corp.example", 1)], &[relay_host]));
    o
}

/// A namespace of `contacts` contacts over `policies` policies and
/// `connectors` connectors, shaped like a real organisation: one
/// authoritative domain, contacts homed on many mailbox servers.
pub fn organisation(contacts: usize, policies: usize, connectors: usize) -> Objects {
    let mut o = Objects::default();
    o.address_spaces
        .push(authoritative("example-com", "example.com"));
    o.address_spaces
        .push(alias_domain("example-net", "example.net", "example.com"));
    for i in 0..connectors {
        o.connectors.push(connector(
            &format!("mbx{i}"),
            &[(&format!("mbx{i}.example.com"), 1)],
            &[&format!(
                "[10.{}.{}.{}]",
                i / 65536 % 256,
                i / 256 % 256,
                i % 256
            )],
        ));
    }
    o.connectors.push(connector("internet", &[("*", 10)], &[]));
    for p in 0..policies {
        o.policies.push(policy(
            &format!("site{p}"),
            p as i32,
            &["%g.%s@example.com", "%1g%s@example.net"],
            match_labels(&[("site", &format!("s{p}"))]),
        ));
    }
    for i in 0..contacts {
        let server = i % connectors.max(1);
        let c = person(
            &format!("user{i}"),
            &format!("Given{i}"),
            &format!("Surname{i}"),
            &format!("user{i}@mbx{server}.example.com"),
        );
        let mut c = labelled(c, &[("site", &format!("s{}", i % policies.max(1)))]);
        c.spec.proxy_addresses = vec![format!("u{i}@example.com")];
        o.contacts.push(c);
    }
    o
}

/// The published files of an [`organisation`] of `contacts` contacts, no
/// policies and two mailbox connectors.
pub fn published(contacts: usize) -> crate::table::EncodedTable {
    let objects = organisation(contacts, 0, 2);
    crate::table::encode(crate::compile(&objects, &crate::CompileOptions::default()).table())
}

/// A SendingGrant: its principals, the outside domains it may relay to,
/// the senders it may use, messages per minute.
pub fn grant(
    name: &str,
    principals: Vec<Principal>,
    relay: &[&str],
    senders: &[&str],
    per_minute: Option<u32>,
) -> SendingGrant {
    SendingGrant {
        metadata: meta(name),
        spec: SendingGrantSpec {
            principals,
            relay_domains: relay.iter().map(|s| s.to_string()).collect(),
            senders: senders.iter().map(|s| s.to_string()).collect(),
            messages_per_minute: per_minute,
            max_recipients_per_message: None,
        },
        status: None,
    }
}

/// `namespace/name`, or `namespace` for every ServiceAccount of it.
pub fn service_account(sa: &str) -> Principal {
    let (namespace, name) = match sa.split_once('/') {
        Some((ns, n)) => (ns, Some(n.to_owned())),
        None => (sa, None),
    };
    Principal {
        service_account: Some(ServiceAccountRef {
            namespace: namespace.into(),
            name,
        }),
        ..Default::default()
    }
}

pub fn password_secret(name: &str) -> Principal {
    Principal {
        password_secret: Some(PasswordSecretRef { name: name.into() }),
        ..Default::default()
    }
}

pub fn network(cidr: &str) -> Principal {
    Principal {
        network: Some(cidr.into()),
        ..Default::default()
    }
}

pub fn certificate_subject(subject: &str) -> Principal {
    Principal {
        client_certificate: Some(ClientCertificate {
            subject: Some(subject.into()),
            dns_name: None,
        }),
        ..Default::default()
    }
}

pub fn certificate_dns_name(name: &str) -> Principal {
    Principal {
        client_certificate: Some(ClientCertificate {
            subject: None,
            dns_name: Some(name.into()),
        }),
        ..Default::default()
    }
}
