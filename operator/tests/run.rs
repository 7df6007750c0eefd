//! `mailroute operator` as a whole (`controller::run_with`) against a mocked
//! API server: the caches list and watch, the replica wins the election,
//! reads the relay Service for its own addresses, turns ready, publishes
//! the table `mailroute compile` would write with those addresses, writes
//! every status with ForwardsToSelf found through the Service, announces the
//! risk as a Warning Event, and on shutdown releases its lease. Every
//! request must be granted by deploy/rbac.yaml.

use clap::Parser;
use kube::Client;
use operator::controller::{Options, run_with};
use routing::fixtures::small_org_through;
use routing::table::configmaps::table_configmaps;
use routing::table::encode;
use routing::{CompileOptions, Objects};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use testkit::{FakeCluster, Grants, Recorded, Seen, http_get, repo_file};

const NS: &str = "mail";
const OWN_NS: &str = "mailroute";
const CLUSTER_IP: &str = "10.96.0.25";

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    options: Options,
}

/// One of everything; the connector for corp.example points at the relay
/// Service by its cluster DNS name, which only the Service lookup reveals.
fn objects() -> Objects {
    small_org_through("relay.mailroute.svc.cluster.local")
}

/// The four kinds' lists, by plural resource name, as the API server sends them.
fn lists(o: &Objects) -> BTreeMap<&'static str, Value> {
    fn items<T: serde::Serialize>(kind: &str, all: &[T]) -> Value {
        let items: Vec<Value> = all
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let mut v = serde_json::to_value(x).unwrap();
                v["apiVersion"] = json!("mailroute.io/v1alpha1");
                v["kind"] = json!(kind);
                v["metadata"]["namespace"] = json!(NS);
                v["metadata"]["uid"] = json!(format!("{kind}-{i}"));
                v["metadata"]["resourceVersion"] = json!("1");
                v
            })
            .collect();
        json!({"apiVersion": "mailroute.io/v1alpha1", "kind": format!("{kind}List"),
               "metadata": {"resourceVersion": "1"}, "items": items})
    }
    BTreeMap::from([
        ("addressspaces", items("AddressSpace", &o.address_spaces)),
        ("recipientpolicies", items("RecipientPolicy", &o.policies)),
        ("mailcontacts", items("MailContact", &o.contacts)),
        ("smtpconnectors", items("SmtpConnector", &o.connectors)),
    ])
}

fn relay_service() -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "relay", "namespace": OWN_NS, "resourceVersion": "1"},
           "spec": {"clusterIP": CLUSTER_IP, "clusterIPs": [CLUSTER_IP],
                    "ports": [{"port": 25, "targetPort": 2525}]}})
}

/// A cluster holding `objects` in NS and the relay Service in OWN_NS.
fn cluster(objects: &Objects) -> (Client, Seen) {
    let mut fake = FakeCluster::default().with_object(
        &format!("/api/v1/namespaces/{OWN_NS}/services/relay"),
        relay_service(),
    );
    for (plural, list) in lists(objects) {
        fake = fake.with_list(plural, list);
    }
    fake.serve(OWN_NS)
}

/// The last apply body written to `path_part`, once one is there.
fn last_write<'a>(seen: &'a [Recorded], path_part: &str) -> Option<&'a Value> {
    seen.iter()
        .rev()
        .find(|r| r.method == "PATCH" && r.path.contains(path_part))
        .map(|r| &r.body)
}

fn loop_risk(status_apply: &Value) -> (String, String) {
    let c = status_apply["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "LoopRisk")
        .unwrap();
    (
        c["status"].as_str().unwrap().into(),
        c["reason"].as_str().unwrap().into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_elects_watches_publishes_reports_and_releases_its_lease() {
    let objects = objects();
    let (client, seen) = cluster(&objects);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cli = Cli::parse_from([
        "operator",
        "--relay-service=relay",
        "--identity=operator-0",
        "--debounce-ms=50",
        "--lease-duration=3",
        &format!("--metrics-listen=127.0.0.1:{port}"),
    ]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = run_with(client, cli.options, async {
        let _ = stopped.await;
    });
    // The operator's future is not Send (the applier's closures), so it runs
    // beside the checks in this task rather than spawned.
    let observe = async {
        observe_until_published(&seen, port, &objects).await;
        stop.send(()).unwrap();
    };
    let (result, ()) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(operator, observe)
    })
    .await
    .expect("the operator publishes and then stops");
    result.unwrap();

    // After shutdown, the lease is released (holder cleared).
    let after = seen.lock().unwrap().clone();
    let release = after
        .iter()
        .rev()
        .find(|r| r.method == "PATCH" && r.path.contains("/leases/mailroute-operator"))
        .unwrap();
    assert_eq!(
        release.body["spec"]["holderIdentity"],
        Value::Null,
        "{:?}",
        release.body
    );
    assert!(
        release.body["spec"]
            .as_object()
            .unwrap()
            .contains_key("holderIdentity")
    );
}

/// Waits until the operator has published the expected table and status,
/// then checks readiness, metrics, the order of writes, Events and RBAC.
async fn observe_until_published(seen: &Mutex<Vec<Recorded>>, port: u16, objects: &Objects) {
    // The table `mailroute compile` writes with the Service's names and IP
    // as the relay's own addresses.
    let self_addresses = vec![
        CLUSTER_IP.to_owned(),
        "relay".into(),
        "relay.mailroute".into(),
        "relay.mailroute.svc".into(),
        "relay.mailroute.svc.cluster.local".into(),
    ];
    let expected = encode(routing::compile(objects, &CompileOptions { self_addresses }).table());
    let want_manifest = String::from_utf8(expected.files["manifest.json"].clone()).unwrap();
    let manifest = format!("/api/v1/namespaces/{NS}/configmaps/mailroute-table?");
    let unix_status = format!("/namespaces/{NS}/smtpconnectors/unix/status");
    let mut done = false;
    for _ in 0..500 {
        {
            let seen = seen.lock().unwrap();
            let published = last_write(&seen, &manifest)
                .is_some_and(|cm| cm["data"]["manifest.json"] == want_manifest);
            let risk = last_write(&seen, &unix_status).map(loop_risk);
            let announced = seen.iter().any(|r| {
                r.method == "POST"
                    && r.path.contains("/events")
                    && r.body["type"] == "Warning"
                    && r.body["reason"] == "ForwardsToSelf"
                    && r.body["regarding"]["name"] == "unix"
            });
            let found = risk == Some(("True".into(), "ForwardsToSelf".into()));
            if published && found && announced {
                done = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let requests = seen.lock().unwrap().clone();
    let lines: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        done,
        "never published the table, status and Warning Event with ForwardsToSelf: {lines:#?}"
    );

    // Ready as the leader; the metrics say so.
    let readyz = http_get(([127, 0, 0, 1], port).into(), "/readyz").await;
    assert!(
        readyz.starts_with("HTTP/1.1 200") && readyz.ends_with("ready (leader)\n"),
        "{readyz}"
    );
    let metrics = http_get(([127, 0, 0, 1], port).into(), "/metrics").await;
    assert!(
        metrics.contains("\nmailroute_operator_leader 1\n"),
        "{metrics}"
    );

    // Nothing is written before the lease is held.
    let first_write = lines
        .iter()
        .position(|l| !l.starts_with("GET") && !l.contains("/leases"))
        .unwrap();
    let acquired = lines
        .iter()
        .position(|l| l.contains("/leases") && !l.starts_with("GET"))
        .unwrap();
    assert!(acquired < first_write, "{lines:#?}");

    // Every ConfigMap of the table as compiled.
    for cm in table_configmaps("mailroute-table", NS, &expected) {
        let name = cm.metadata.name.clone().unwrap();
        let path = format!("/api/v1/namespaces/{NS}/configmaps/{name}?");
        let written = last_write(&requests, &path).unwrap_or_else(|| panic!("{name} not written"));
        let want = serde_json::to_value(&cm).unwrap();
        assert_eq!(written["data"], want["data"], "{name}");
        assert_eq!(written["binaryData"], want["binaryData"], "{name}");
    }
    Grants::of(
        &[&repo_file("deploy/rbac.yaml")],
        OWN_NS,
        "mailroute-operator",
    )
    .assert_allows(
        requests
            .iter()
            .map(|r| (r.method.as_str(), r.path.as_str())),
    );
}

/// Status writes fail (500), so the namespace sits in a retry backoff when
/// SIGTERM comes: the operator still stops within seconds and releases its
/// lease, instead of waiting for the retry until the kubelet kills it and
/// the standby waits out the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_pending_retry() {
    let objects = objects();
    let mut fake = FakeCluster::default()
        .with_object(
            &format!("/api/v1/namespaces/{OWN_NS}/services/relay"),
            relay_service(),
        )
        .refusing("/status", 500);
    for (plural, list) in lists(&objects) {
        fake = fake.with_list(plural, list);
    }
    let (client, seen) = fake.serve(OWN_NS);
    let cli = Cli::parse_from([
        "operator",
        "--identity=operator-0",
        "--debounce-ms=50",
        "--metrics-listen=127.0.0.1:0",
    ]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = run_with(client, cli.options, async {
        let _ = stopped.await;
    });
    let status_writes = |seen: &Seen| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|r| r.method == "PATCH" && r.path.contains("/status"))
            .count()
    };
    let stopping = async {
        // A failed reconcile, and then its retry a second later: the next
        // retry is scheduled, two seconds out.
        while status_writes(&seen) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let first = status_writes(&seen);
        while status_writes(&seen) == first {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(()).unwrap();
        std::time::Instant::now()
    };
    let (result, asked) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(operator, stopping)
    })
    .await
    .expect("the operator stops");
    result.unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "took {:?} to stop",
        asked.elapsed()
    );
    let released = seen.lock().unwrap().iter().rev().any(|r| {
        r.method == "PATCH"
            && r.path.contains("/leases/")
            && r.body["spec"]["holderIdentity"].is_null()
    });
    assert!(released, "the lease was not released");
}
