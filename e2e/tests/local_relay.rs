//! Real mail through a relay run as a local process with `--configmap`
//! against the cluster's published table, to local sinks, and the time it
//! takes to follow a change; the relay reports what it serves in the
//! RoutingTable, whose Propagated condition follows (e2e/run.sh local: the
//! operator runs without --relay-namespace, so every reporting relay counts).

use e2e::*;
use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

#[tokio::test]
#[cfg_attr(
    not(e2e_local),
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
    let objects = objects_from_yaml(&format!(
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
            "--report-to",
            &format!("{}/{TABLE}", ns.name),
            "--pod-name",
            "host-relay",
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
    // The sink prints what it received a moment after it said 250.
    let firsts = || {
        got_a
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("\"first\""))
            .count()
    };
    let seen = Instant::now();
    while firsts() == 0 && seen.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(firsts(), 1, "sink a: {:?}", got_a.lock().unwrap());

    // The RoutingTable: the published generation, served by the one relay.
    let version = table_version(&ns.client, &ns.name).await.unwrap();
    let table = wait_for_propagation(
        &ns.client,
        &ns.name,
        Some(&version),
        "True",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let status = table.status.unwrap();
    assert_eq!(status.relays_serving.as_deref(), Some("1/1"));
    assert_eq!(status.relays.len(), 1);
    assert_eq!(status.relays[0].pod, "host-relay");
    assert_eq!(
        status.relays[0].generation.as_deref(),
        Some(version.as_str())
    );
    assert_eq!(status.objects.unwrap().mail_contacts, 1);
    let wide = kubectl(&["get", "routingtables", "-n", &ns.name]);
    assert!(
        wide.contains(&format!("{}   1/1", &version[..12])),
        "{wide}"
    );

    // Change the contact; time until the relay routes the new way.
    let changed = Instant::now();
    retarget_contact(
        &ns.client,
        &ns.name,
        "ann",
        "ann@b.example.test",
        &["ann@example.test"],
    )
    .await
    .unwrap();
    let took = probe_until(&relay_addr, changed, Duration::from_secs(60), || {
        let seen = got_b.lock().unwrap().iter().any(|l| l.contains("probe-"));
        async move { seen }
    })
    .await;
    eprintln!(
        "propagation: contact changed → relay routes the new way in {:.2} s",
        took.as_secs_f64()
    );
    // ... and the RoutingTable says so: kubectl wait returns.
    let version = table_version(&ns.client, &ns.name).await.unwrap();
    kubectl(&[
        "wait",
        "-n",
        &ns.name,
        "--for=condition=Propagated",
        &format!("routingtable/{TABLE}"),
        "--timeout=30s",
    ]);
    let table = routing_table(&ns.client, &ns.name).await.unwrap().unwrap();
    let shown = table.status.as_ref().and_then(|s| s.generation.clone());
    assert_eq!(shown.as_deref(), Some(version.as_str()));
    let reported = wait_for_propagation(
        &ns.client,
        &ns.name,
        Some(&version),
        "True",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let since_change = changed.elapsed();
    eprintln!(
        "propagation: contact changed → RoutingTable Propagated in at most {:.2} s",
        since_change.as_secs_f64()
    );
    assert_eq!(
        reported.status.unwrap().relays[0].generation.as_deref(),
        Some(version.as_str())
    );
    std::fs::write(
        std::env::temp_dir().join("mailroute-e2e-propagation.txt"),
        format!("{:.3}\n", took.as_secs_f64()),
    )
    .unwrap();
}
