//! What the operator asks of the API server outside a reconcile: its
//! caches' lists and watches, and the leader election on its Lease. Both
//! run against a mocked API server; every request must be granted by the
//! RBAC the chart ships (deploy/rbac.yaml), and the ConfigMap watch must
//! carry the managed-by label, since RBAC cannot restrict it by label.
//! (Reconcile requests are checked the same way in controller.rs.)

use futures::StreamExt;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use operator::controller::{caches, leader};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::{Grants, repo_file};

/// Every request so far, as (method, path).
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// An API server with nothing in it: lists are empty, watches stay open
/// and quiet, the Lease does not exist until it is created. Returns the
/// client and the requests seen so far (method, path).
fn empty_cluster() -> (Client, Seen) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Seen::default();
    let record = seen.clone();
    tokio::spawn(async move {
        let mut open_watches = Vec::new();
        let mut lease: Option<Value> = None;
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().to_string();
            let path = request.uri().to_string();
            let body = request.into_body().collect_bytes().await.unwrap();
            record.lock().unwrap().push((method.clone(), path.clone()));
            let is_lease = path.contains("/leases");
            let (code, answer) = match method.as_str() {
                "GET" if path.contains("watch=true") => {
                    open_watches.push(send);
                    continue;
                }
                "GET" if is_lease => match &lease {
                    Some(l) => (200, l.clone()),
                    None => (
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "NotFound", "code": 404, "message": "not found"}),
                    ),
                },
                "GET" => (
                    200,
                    json!({"kind": "List", "apiVersion": "v1",
                           "metadata": {"resourceVersion": "1"}, "items": []}),
                ),
                "POST" | "PATCH" if is_lease => {
                    let change: Value = serde_json::from_slice(&body).unwrap();
                    // A Lease has no lists: its strategic merge is a JSON merge.
                    let mut l = lease.take().unwrap_or(json!({}));
                    merge(&mut l, &change);
                    let version = l["metadata"]["resourceVersion"].as_str().unwrap_or("1");
                    let next = version.parse::<u64>().unwrap() + 1;
                    l["metadata"]["resourceVersion"] = json!(next.to_string());
                    l["metadata"]["namespace"] = json!("mailroute");
                    lease = Some(l.clone());
                    (if method == "POST" { 201 } else { 200 }, l)
                }
                _ => panic!("unexpected request {method} {path}"),
            };
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap(),
            );
        }
    });
    (Client::new(service, "mailroute"), seen)
}

/// RFC 7386 JSON merge patch: null removes a key, objects merge.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

async fn until(seen: &Mutex<Vec<(String, String)>>, done: impl Fn(&[(String, String)]) -> bool) {
    for _ in 0..200 {
        if done(&seen.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened; requests: {:#?}", seen.lock().unwrap());
}

fn assert_granted(seen: &[(String, String)]) {
    Grants::of(
        &[&repo_file("deploy/rbac.yaml")],
        "mailroute",
        "mailroute-operator",
    )
    .assert_allows(seen.iter().map(|(m, p)| (m.as_str(), p.as_str())));
}

#[tokio::test]
async fn the_caches_list_and_watch_only_what_the_rbac_grants() {
    let (client, seen) = empty_cluster();
    let (_caches, changes) = caches::watch(&client, &[]);
    tokio::spawn(futures::stream::select_all(changes).for_each(|_| async {}));
    let watches =
        |s: &[(String, String)]| s.iter().filter(|(_, p)| p.contains("watch=true")).count();
    until(&seen, |s| watches(s) == 5).await;
    let seen = seen.lock().unwrap().clone();
    assert_granted(&seen);

    let mut kinds: Vec<&str> = seen
        .iter()
        .map(|(_, p)| p.split('?').next().unwrap().rsplit('/').next().unwrap())
        .collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "addressspaces",
            "configmaps",
            "mailcontacts",
            "recipientpolicies",
            "smtpconnectors"
        ]
    );
    let managed = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dmailroute";
    for (method, path) in &seen {
        assert_eq!(method, "GET");
        if path.contains("/configmaps") {
            assert!(
                path.starts_with("/api/v1/configmaps?") && path.contains(managed),
                "{path}"
            );
        } else {
            assert!(path.starts_with("/apis/mailroute.io/v1alpha1/"), "{path}");
        }
    }
}

#[tokio::test]
async fn watched_namespaces_are_listed_one_by_one() {
    let (client, seen) = empty_cluster();
    let (_caches, changes) = caches::watch(&client, &["a".into(), "b".into()]);
    tokio::spawn(futures::stream::select_all(changes).for_each(|_| async {}));
    until(&seen, |s| {
        s.iter().filter(|(_, p)| p.contains("watch=true")).count() == 10
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    assert_granted(&seen);
    for (_, path) in &seen {
        let in_a_or_b = ["a", "b"].iter().any(|ns| {
            path.starts_with(&format!("/api/v1/namespaces/{ns}/configmaps?"))
                || path.starts_with(&format!("/apis/mailroute.io/v1alpha1/namespaces/{ns}/"))
        });
        assert!(in_a_or_b, "{path}");
    }
}

#[tokio::test]
async fn the_election_reads_creates_and_renews_its_lease_as_granted() {
    let (client, seen) = empty_cluster();
    let election = leader::elect(client, "mailroute", "mailroute-operator", "pod-a", 3)
        .await
        .unwrap();
    let mut leadership = election.leadership.clone();
    if !leadership.is_leader() {
        let became = tokio::time::timeout(Duration::from_secs(5), leadership.changed()).await;
        assert_eq!(became.ok(), Some(Some(true)), "{:#?}", seen.lock().unwrap());
    }
    // A renewal comes within the grace period (1 s for a 3 s lease).
    until(&seen, |s| {
        s.iter().filter(|(m, _)| m == "PATCH").count() >= 1
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    assert_granted(&seen);
    let lease = "/apis/coordination.k8s.io/v1/namespaces/mailroute/leases/mailroute-operator";
    assert!(
        seen.iter().all(|(_, p)| p.starts_with(lease)
            || p.starts_with("/apis/coordination.k8s.io/v1/namespaces/mailroute/leases?")),
        "{seen:#?}"
    );
    let methods: Vec<&str> = seen.iter().map(|(m, _)| m.as_str()).collect();
    assert!(
        methods.contains(&"POST"),
        "the missing Lease is created: {methods:?}"
    );
    assert!(!methods.contains(&"PUT"), "never an update: {methods:?}");
}
