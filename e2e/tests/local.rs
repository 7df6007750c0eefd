//! The end-to-end suite against a real API server, with the operator
//! running (e2e/run.sh starts it; the kind variant runs it in-cluster).
//! Ignored unless MAILROUTE_E2E=1.

use e2e::*;
use kube::api::{Api, Patch, PatchParams};
use routing::crd::MailContact;
use routing::table::encode;
use routing::{CompileOptions, Objects};
use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The relay's own names, as the operator under test was given them (--self).
fn self_addresses() -> Vec<String> {
    std::env::var("E2E_SELF")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn scenario(file: &str) -> Objects {
    let m = manifests::read(&[repo().join("examples").join(file)]).expect("example readable");
    m.single(None).expect("one namespace").1
}

const SCENARIOS: &[&str] = &[
    "1-alias-table.yaml",
    "2-domain-reroute.yaml",
    "3-shared-address-space.yaml",
    "4-mail-switch.yaml",
    "5-most-specific.yaml",
];

#[tokio::test]
#[cfg_attr(
    not(e2e),
    ignore = "needs a Kubernetes cluster and a running operator: e2e/run.sh local"
)]
async fn each_scenario_gets_the_conditions_check_reports_and_the_table_compile_writes() {
    for file in SCENARIOS {
        let ns = TestNamespace::create(&format!("e2e-s{}", &file[..1]))
            .await
            .unwrap();
        apply(&ns.client, &ns.name, &scenario(file)).await.unwrap();
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

        // Applying the same objects again writes nothing: no resourceVersion moves.
        let versions = |all: &std::collections::BTreeMap<String, serde_json::Value>| {
            all.iter()
                .map(|(k, v)| (k.clone(), v["metadata"]["resourceVersion"].clone()))
                .collect::<Vec<_>>()
        };
        let before = versions(&seen);
        let tables_before = published;
        apply(&ns.client, &ns.name, &scenario(file)).await.unwrap();
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

/// Collects a child's stdout lines.
fn lines_of(p: &mut Process) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = p.0.stdout.take().expect("piped stdout");
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

fn yaml_objects(text: &str) -> Objects {
    let dir = std::env::temp_dir().join(format!("mailroute-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("objects.yaml");
    std::fs::write(&path, text).unwrap();
    manifests::read(&[path]).unwrap().single(None).unwrap().1
}

#[tokio::test]
#[cfg_attr(
    not(e2e),
    ignore = "needs a Kubernetes cluster and a running operator: e2e/run.sh local"
)]
async fn the_relay_routes_real_mail_by_the_configmap_and_follows_a_change() {
    let ns = TestNamespace::create("e2e-relay").await.unwrap();
    let (port_a, port_b, port_relay, port_metrics) =
        (free_port(), free_port(), free_port(), free_port());
    let mut sink_a =
        Process::start(&binary("E2E_SINK"), &["a", &format!("127.0.0.1:{port_a}")]).unwrap();
    let mut sink_b =
        Process::start(&binary("E2E_SINK"), &["b", &format!("127.0.0.1:{port_b}")]).unwrap();
    let (got_a, got_b) = (lines_of(&mut sink_a), lines_of(&mut sink_b));
    let objects = yaml_objects(&format!(
        r#"
apiVersion: mailroute.io/v1alpha1
kind: AddressSpace
metadata: {{name: example-test}}
spec: {{domain: example.test, type: Authoritative}}
---
apiVersion: mailroute.io/v1alpha1
kind: SmtpConnector
metadata: {{name: a}}
spec:
  addressSpaces: [{{domain: a.example.test, cost: 1}}]
  smartHosts: ["[127.0.0.1]:{port_a}"]
  tls: {{mode: None}}
---
apiVersion: mailroute.io/v1alpha1
kind: SmtpConnector
metadata: {{name: b}}
spec:
  addressSpaces: [{{domain: b.example.test, cost: 1}}]
  smartHosts: ["[127.0.0.1]:{port_b}"]
  tls: {{mode: None}}
---
apiVersion: mailroute.io/v1alpha1
kind: MailContact
metadata: {{name: ann}}
spec: {{targetAddress: ann@a.example.test, proxyAddresses: [ann@example.test]}}
"#
    ));
    apply(&ns.client, &ns.name, &objects).await.unwrap();
    wait_for_status(&ns.client, &ns.name, Duration::from_secs(60))
        .await
        .unwrap();

    let relay_addr = format!("127.0.0.1:{port_relay}");
    let _relay = Process::start(
        &binary("E2E_RELAY"),
        &[
            "--configmap",
            TABLE,
            "--namespace",
            &ns.name,
            "--listen",
            &relay_addr,
            "--metrics-listen",
            &format!("127.0.0.1:{port_metrics}"),
            "--hostname",
            "relay.e2e.test",
        ],
    )
    .unwrap();

    // Real mail through the relay to the sink the contact routes to.
    let start = Instant::now();
    let delivered = loop {
        match send(
            &relay_addr,
            "sender@example.org",
            "ann@example.test",
            "first",
        )
        .await
        {
            Ok((rcpt, Some(done))) if rcpt.starts_with("250") => break done,
            other if start.elapsed() > Duration::from_secs(30) => {
                panic!("the relay never routed: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    assert!(delivered.starts_with("250"), "{delivered}");
    assert_eq!(
        got_a
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("first"))
            .count(),
        1
    );

    // Change the contact; time until the relay routes the new way.
    let changed = Instant::now();
    Api::<MailContact>::namespaced(ns.client.clone(), &ns.name)
        .patch(
            "ann",
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(serde_json::json!({
                "apiVersion": "mailroute.io/v1alpha1",
                "kind": "MailContact",
                "metadata": {"name": "ann"},
                "spec": {"targetAddress": "ann@b.example.test", "proxyAddresses": ["ann@example.test"]}
            })),
        )
        .await
        .unwrap();
    let mut n = 0;
    loop {
        n += 1;
        let subject = format!("probe-{n}");
        let _ = send(
            &relay_addr,
            "sender@example.org",
            "ann@example.test",
            &subject,
        )
        .await;
        if got_b.lock().unwrap().iter().any(|l| l.contains("probe-")) {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(60),
            "the relay never followed the change"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = changed.elapsed();
    eprintln!(
        "propagation: contact changed → relay routes the new way in {:.2} s",
        took.as_secs_f64()
    );
    std::fs::write(
        std::env::temp_dir().join("mailroute-e2e-propagation.txt"),
        format!("{:.3}\n", took.as_secs_f64()),
    )
    .unwrap();
}
