//! What the operator asks of the API server outside a reconcile: its
//! caches' lists and watches, and the leader election on its Lease. Both
//! run against a mocked API server; every request must be granted by the
//! RBAC the chart ships (deploy/rbac.yaml), and the ConfigMap watch must
//! carry the managed-by label, since RBAC cannot restrict it by label.
//! (Reconcile requests are checked the same way in controller.rs.)

use futures::StreamExt;
use operator::controller::{caches, leader};
use std::time::Duration;
use testkit::{FakeCluster, Grants, Recorded, Seen, repo_file};

/// An API server with nothing in it but what the operator creates.
fn empty_cluster() -> (kube::Client, Seen) {
    FakeCluster::default().serve("mailroute")
}

fn requests(seen: &Seen) -> Vec<(String, String)> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|r: &Recorded| (r.method.clone(), r.path.clone()))
        .collect()
}

async fn until(seen: &Seen, done: impl Fn(&[(String, String)]) -> bool) {
    for _ in 0..200 {
        if done(&requests(seen)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened; requests: {:#?}", requests(seen));
}

fn assert_granted(seen: &[(String, String)]) {
    Grants::of(
        &[&repo_file("deploy/rbac.yaml")],
        "mailroute",
        "mailroute-operator",
    )
    .assert_allows(seen.iter().map(|(m, p)| (m.as_str(), p.as_str())));
}

fn drain(watched: caches::Watched) {
    let all = watched.compile.into_iter().chain(watched.propagation);
    tokio::spawn(futures::stream::select_all(all).for_each(|_| async {}));
}

#[tokio::test]
async fn the_caches_list_and_watch_only_what_the_rbac_grants() {
    let (client, seen) = empty_cluster();
    let (_caches, watched) = caches::watch(&client, &[], Some("mailroute"), Default::default());
    drain(watched);
    let watches =
        |s: &[(String, String)]| s.iter().filter(|(_, p)| p.contains("watch=true")).count();
    until(&seen, |s| watches(s) == 10).await;
    let seen = requests(&seen);
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
            "pods",
            "recipientpolicies",
            "routingtables",
            "secrets",
            "sendinggrants",
            "serviceaccounts",
            "smtpconnectors"
        ]
    );
    let managed = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dmailroute";
    for (method, path) in &seen {
        assert_eq!(method, "GET");
        if path.contains("/pods") {
            // Only the relay pods, only in the relay namespace.
            assert!(
                path.starts_with("/api/v1/namespaces/mailroute/pods?")
                    && path.contains("labelSelector=mailroute.io%2Ftable-namespace"),
                "{path}"
            );
        } else if path.contains("/secrets") {
            // Only password Secrets: RBAC cannot restrict this, the selector does.
            assert!(
                path.starts_with("/api/v1/secrets?")
                    && path.contains("fieldSelector=type%3Dmailroute.io%2Fhtpasswd"),
                "{path}"
            );
        } else if path.contains("/serviceaccounts") {
            assert!(path.starts_with("/api/v1/serviceaccounts?"), "{path}");
        } else if path.contains("/configmaps") || path.contains("/routingtables") {
            let path = path.replace("/apis/mailroute.io/v1alpha1/", "/api/v1/");
            let path = path.replace("/routingtables", "/configmaps");
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
    let (_caches, watched) =
        caches::watch(&client, &["a".into(), "b".into()], None, Default::default());
    drain(watched);
    until(&seen, |s| {
        s.iter().filter(|(_, p)| p.contains("watch=true")).count() == 17
    })
    .await;
    let seen = requests(&seen);
    assert_granted(&seen);
    for (_, path) in &seen {
        let in_a_or_b = ["a", "b"].iter().any(|ns| {
            path.starts_with(&format!("/api/v1/namespaces/{ns}/configmaps?"))
                || path.starts_with(&format!("/api/v1/namespaces/{ns}/secrets?"))
                || path.starts_with(&format!("/apis/mailroute.io/v1alpha1/namespaces/{ns}/"))
        });
        // ServiceAccounts: a grant may name any namespace's.
        assert!(
            in_a_or_b || path.starts_with("/api/v1/serviceaccounts?"),
            "{path}"
        );
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
        assert_eq!(became.ok(), Some(Some(true)), "{:#?}", requests(&seen));
    }
    // A renewal comes within the grace period (1 s for a 3 s lease).
    until(&seen, |s| {
        s.iter().filter(|(m, _)| m == "PATCH").count() >= 1
    })
    .await;
    let seen = requests(&seen);
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
