//! Every reference scenario, and the broken configurations, against a
//! real API server and the running operator (local process or in-cluster:
//! e2e/run.sh local|cluster): the conditions `mailroute check` reports, the
//! table `mailroute compile` writes, Warning Events for risks (which
//! `kubectl describe` shows), objects the schema refuses refused by the API
//! server, and no writes on a second apply.

use e2e::*;
use routing::table::encode;
use routing::{CompileOptions, Objects};
use std::time::Duration;

/// The relay's own names, as the operator under test was given them (--self).
fn self_addresses() -> Vec<String> {
    std::env::var("E2E_SELF")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A scenario's objects: those the API server takes, and those it must
/// refuse (annotated `test.mailroute.io/expect` with the refusal's words).
fn scenario(file: &str) -> (Objects, Objects) {
    let m = manifests::read(&[repo().join("examples").join(file)]).expect("example readable");
    let mut objects = m.single(None).expect("one namespace").1;
    let refused = Objects {
        address_spaces: take_refused(&mut objects.address_spaces),
        policies: take_refused(&mut objects.policies),
        contacts: take_refused(&mut objects.contacts),
        connectors: take_refused(&mut objects.connectors),
        grants: take_refused(&mut objects.grants),
        cluster: None,
    };
    (objects, refused)
}

const EXPECT: &str = "test.mailroute.io/expect";

fn take_refused<K: kube::Resource>(items: &mut Vec<K>) -> Vec<K> {
    let (refused, kept) = std::mem::take(items).into_iter().partition(|o| {
        o.meta()
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(EXPECT))
    });
    *items = kept;
    refused
}

const SCENARIOS: &[&str] = &[
    "1-alias-table.yaml",
    "2-domain-reroute.yaml",
    "3-shared-address-space.yaml",
    "4-mail-switch.yaml",
    "5-most-specific.yaml",
    "6-gateway.yaml",
    "broken/rewrite-cycle.yaml",
    "broken/forwards-to-self.yaml",
    "broken/conflicts.yaml",
];

#[tokio::test]
#[cfg_attr(
    not(e2e),
    ignore = "needs a Kubernetes cluster and a running operator: e2e/run.sh local|kind"
)]
async fn each_scenario_gets_the_conditions_check_reports_and_the_table_compile_writes() {
    for (i, file) in SCENARIOS.iter().enumerate() {
        let ns = TestNamespace::create(&format!("e2e-s{i}")).await.unwrap();
        let (objects, refused) = scenario(file);
        apply(&ns.client, &ns.name, &objects).await.unwrap();
        // The API server refuses what the schema refuses (its wording is
        // its own; the annotation holds the offline validator's).
        for one in split(&refused) {
            let error = format!("{:#}", apply(&ns.client, &ns.name, &one).await.unwrap_err());
            assert!(
                error.contains("is invalid") && error.contains("Invalid value"),
                "{file}: {} should have been refused: {error}",
                refusal_of(&one)
            );
        }
        let seen = wait_for_status(&ns.client, &ns.name, Duration::from_secs(60))
            .await
            .unwrap();

        // What `mailroute check` / `mailroute compile` say of the same objects
        // (read back, so creation times decide "oldest wins" the same way).
        let objects = read_back(&ns.client, &ns.name).await.unwrap();
        let compiled = routing::compile(
            &objects,
            &CompileOptions {
                self_addresses: self_addresses(),
            },
        );
        for report in &compiled.reports {
            let key = format!("{}/{}", report.kind, report.name);
            let (_, conditions) = conditions_of(&seen[&key]);
            let expected: Vec<(String, String, String)> = report
                .conditions
                .iter()
                .cloned()
                .chain([report.stalled()])
                .map(|c| {
                    (
                        c.type_.to_owned(),
                        c.status_str().to_owned(),
                        c.reason.to_owned(),
                    )
                })
                .collect();
            assert_eq!(conditions, expected, "{file}: {key}");
        }
        let published = published_files(&ns.client, &ns.name).await.unwrap();
        assert_eq!(
            published,
            encode(compiled.table()).files,
            "{file}: the published table"
        );

        // Risks are announced as Warning Events on the object.
        let events = events(&ns.client, &ns.name).await.unwrap();
        for report in &compiled.reports {
            for c in &report.conditions[1..] {
                if c.status {
                    assert!(
                        events.iter().any(|(t, reason, name)| t == "Warning"
                            && reason == c.reason
                            && *name == report.name),
                        "{file}: no Warning {} for {}/{}: {events:?}",
                        c.reason,
                        report.kind,
                        report.name
                    );
                }
            }
        }

        // `kubectl describe` shows each risk's Event with the object.
        for report in &compiled.reports {
            let risks: Vec<&str> = report.conditions[1..]
                .iter()
                .filter(|c| c.status)
                .map(|c| c.reason)
                .collect();
            if risks.is_empty() {
                continue;
            }
            let described = kubectl(&[
                "describe",
                &report.kind.as_str().to_lowercase(),
                &report.name,
                "-n",
                &ns.name,
            ]);
            let events = described.split("\nEvents:").nth(1).unwrap_or("");
            for reason in risks {
                assert!(
                    events.contains("Warning") && events.contains(reason),
                    "{file}: kubectl describe {}/{} shows no {reason} Event:\n{described}",
                    report.kind,
                    report.name
                );
            }
        }

        // Applying the same objects again writes nothing: no resourceVersion moves.
        let versions = |all: &std::collections::BTreeMap<String, serde_json::Value>| {
            all.iter()
                .map(|(k, v)| (k.clone(), v["metadata"]["resourceVersion"].clone()))
                .collect::<Vec<_>>()
        };
        let before = versions(&seen);
        let tables_before = published;
        apply(&ns.client, &ns.name, &objects).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = statuses(&ns.client, &ns.name).await.unwrap();
        assert_eq!(
            versions(&after),
            before,
            "{file}: a second apply wrote something"
        );
        assert_eq!(
            published_files(&ns.client, &ns.name).await.unwrap(),
            tables_before
        );
        eprintln!(
            "{file}: conditions, table and Events as `mailroute check` / `compile` say; second apply wrote nothing"
        );
    }
}

/// Each object on its own.
fn split(o: &Objects) -> Vec<Objects> {
    let mut out = Vec::new();
    out.extend(o.address_spaces.iter().map(|x| Objects {
        address_spaces: vec![x.clone()],
        ..Objects::default()
    }));
    out.extend(o.policies.iter().map(|x| Objects {
        policies: vec![x.clone()],
        ..Objects::default()
    }));
    out.extend(o.contacts.iter().map(|x| Objects {
        contacts: vec![x.clone()],
        ..Objects::default()
    }));
    out.extend(o.connectors.iter().map(|x| Objects {
        connectors: vec![x.clone()],
        ..Objects::default()
    }));
    out
}

/// The refusal an object's annotation expects (the offline validator's words).
fn refusal_of(o: &Objects) -> String {
    use kube::Resource;
    let meta = o
        .address_spaces
        .first()
        .map(|x| x.meta())
        .or(o.policies.first().map(|x| x.meta()))
        .or(o.contacts.first().map(|x| x.meta()))
        .or(o.connectors.first().map(|x| x.meta()))
        .expect("one object");
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(EXPECT))
        .cloned()
        .unwrap_or_default()
}
