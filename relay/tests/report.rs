//! `--report-to`: the relay's own entry in the RoutingTable's status
//! (feature `kube`), against a mocked API server: one server-side apply per
//! change of what it serves, as the pod's own field manager, retried while
//! the RoutingTable does not exist yet, and nothing while nothing changes.
//! Every request must be granted by the chart's RBAC (deploy/rbac.yaml).
#![cfg(feature = "kube")]

use relay::report::{Reporter, run};
use relay::table::{Tables, load_files};
use routing::fixtures::{authoritative, contact};
use routing::table::encode;
use routing::{CompileOptions, Objects};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use testkit::{Grants, Recorded, mock_api, repo_file};

const NS: &str = "mailroute";

fn table(contact_name: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut o = Objects::default();
    o.address_spaces
        .push(authoritative("example-com", "example.com"));
    o.contacts.push(contact(
        contact_name,
        &[&format!("{contact_name}@example.com")],
        "x@mbx.example.com",
    ));
    encode(routing::compile(&o, &CompileOptions::default()).table()).files
}

async fn until(seen: &Arc<std::sync::Mutex<Vec<Recorded>>>, n: usize) {
    for _ in 0..100 {
        if seen.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("only {} request(s)", seen.lock().unwrap().len());
}

#[tokio::test]
async fn the_relay_reports_each_change_of_what_it_serves_and_nothing_else() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": "NotFound", "code": 404, "message": "routingtables \"mailroute-table\" not found"});
    let (client, server) = mock_api(
        Box::new(move |i, r| {
            record.lock().unwrap().push(r.clone());
            // The operator has not created the RoutingTable yet.
            if i == 0 {
                (404, not_found.clone())
            } else {
                (200, r.body.clone())
            }
        }),
        NS,
    );
    let tables = Arc::new(Tables::default());
    let first = load_files("test", &table("ann")).unwrap();
    let version = first.version.clone();
    tables.set(first);
    let reporter = Reporter {
        namespace: NS.into(),
        table: "mailroute-table".into(),
        pod: "relay-1".into(),
        pod_namespace: Some(NS.into()),
    };
    let task = tokio::spawn(run(client, reporter, tables.served()));
    // Refused at once, tried again after a second.
    until(&seen, 2).await;
    tables.record(&Err("shard 0: hash mismatch".into()));
    until(&seen, 3).await;
    // Nothing changes: nothing is written.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    task.abort();
    let _ = task.await;
    let seen = server.await.unwrap();
    assert_eq!(seen.len(), 3, "{seen:#?}");
    let path = "/apis/mailroute.io/v1alpha1/namespaces/mailroute/routingtables/mailroute-table/status?&force=true&fieldManager=mailroute-relay-relay-1";
    for r in &seen {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("PATCH", path));
    }
    let entry = |r: &Recorded| r.body["status"]["relays"][0].clone();
    assert_eq!(seen[0].body, seen[1].body, "the same report, retried");
    assert_eq!(entry(&seen[1])["pod"], "relay-1");
    assert_eq!(entry(&seen[1])["podNamespace"], NS);
    assert_eq!(entry(&seen[1])["generation"], version.as_str());
    assert!(entry(&seen[1])["loadedAt"].is_string());
    assert!(entry(&seen[1]).get("refused").is_none());
    // Still serving the table before, and saying why the new one was refused.
    assert_eq!(entry(&seen[2])["generation"], version.as_str());
    assert_eq!(entry(&seen[2])["refused"], "shard 0: hash mismatch");
    Grants::of(&[&repo_file("deploy/rbac.yaml")], NS, "mailroute-relay")
        .assert_allows(seen.iter().map(|r| (r.method.as_str(), r.path.as_str())));
}
