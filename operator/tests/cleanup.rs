//! `mailroute cleanup` (the chart's post-delete hook) against a mocked API
//! server: exactly the table's labelled ConfigMaps, its RoutingTables and
//! the Lease are deleted,
//! and the chart's hook RBAC allows every request.

use operator::cleanup::{Options, run};
use serde_json::{Value, json};
use testkit::*;

const SELECTOR: &str =
    "app.kubernetes.io%2Fmanaged-by%3Dmailroute%2Cmailroute.io%2Ftable%3Dmailroute-table";

fn configmap_list(items: &[(&str, &str)]) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMapList", "metadata": {},
        "items": items.iter().map(|(ns, name)| json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns}
        })).collect::<Vec<_>>()
    })
}

fn routing_table_list(items: &[(&str, &str)]) -> Value {
    json!({
        "apiVersion": "mailroute.io/v1alpha1", "kind": "RoutingTableList", "metadata": {},
        "items": items.iter().map(|(ns, name)| json!({
            "apiVersion": "mailroute.io/v1alpha1", "kind": "RoutingTable",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"configMapName": name}
        })).collect::<Vec<_>>()
    })
}

fn options(namespaces: &[&str]) -> Options {
    Options {
        namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
        table_name: "mailroute-table".into(),
        lease_name: "mailroute-operator".into(),
        lease_namespace: None,
    }
}

fn requests(seen: &[Recorded]) -> Vec<String> {
    seen.iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test]
async fn deletes_every_labelled_table_configmap_and_routing_table_then_the_lease() {
    let (client, server) = mock_api(
        Box::new(|i, _| match i {
            0 => (
                200,
                configmap_list(&[
                    ("a", "mailroute-table-shard-000"),
                    ("a", "mailroute-table"),
                    ("b", "mailroute-table"),
                ]),
            ),
            4 => (200, routing_table_list(&[("a", "mailroute-table")])),
            _ => (200, Value::Null),
        }),
        "mailroute",
    );
    let deleted = run(client, &options(&[])).await.unwrap();
    assert_eq!(
        deleted,
        [
            "a/ConfigMap/mailroute-table-shard-000",
            "a/ConfigMap/mailroute-table",
            "b/ConfigMap/mailroute-table",
            "a/RoutingTable/mailroute-table",
            "mailroute/Lease/mailroute-operator",
        ]
    );
    let seen = server.await.unwrap();
    // The chart's post-delete hook runs exactly this (no --namespace, the
    // Lease in its own namespace) with the RBAC in deploy/cleanup-rbac.yaml.
    Grants::of(
        &[&repo_file("deploy/cleanup-rbac.yaml")],
        "mailroute",
        "mailroute-cleanup",
    )
    .assert_allows(seen.iter().map(|r| (r.method.as_str(), r.path.as_str())));
    assert_eq!(
        requests(&seen),
        [
            format!("GET /api/v1/configmaps?&labelSelector={SELECTOR}"),
            "DELETE /api/v1/namespaces/a/configmaps/mailroute-table-shard-000?".into(),
            "DELETE /api/v1/namespaces/a/configmaps/mailroute-table?".into(),
            "DELETE /api/v1/namespaces/b/configmaps/mailroute-table?".into(),
            format!("GET /apis/mailroute.io/v1alpha1/routingtables?&labelSelector={SELECTOR}"),
            "DELETE /apis/mailroute.io/v1alpha1/namespaces/a/routingtables/mailroute-table?".into(),
            "DELETE /apis/coordination.k8s.io/v1/namespaces/mailroute/leases/mailroute-operator?"
                .into(),
        ]
    );
}

#[tokio::test]
async fn only_the_listed_namespaces_and_nothing_left_is_not_an_error() {
    let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": "NotFound", "code": 404, "message": "not found"});
    let (client, server) = mock_api(
        Box::new(move |i, _| match i {
            0 => (200, configmap_list(&[("x", "mailroute-table")])),
            // Gone between the list and the delete (another run got it).
            1 => (404, not_found.clone()),
            2 => (200, configmap_list(&[])),
            3 | 4 => (200, routing_table_list(&[])),
            _ => (404, not_found.clone()),
        }),
        "mailroute",
    );
    let mut o = options(&["x", "y"]);
    o.lease_namespace = Some("ops".into());
    let deleted = run(client, &o).await.unwrap();
    assert!(deleted.is_empty(), "{deleted:?}");
    assert_eq!(
        requests(&server.await.unwrap()),
        [
            format!("GET /api/v1/namespaces/x/configmaps?&labelSelector={SELECTOR}"),
            "DELETE /api/v1/namespaces/x/configmaps/mailroute-table?".into(),
            format!("GET /api/v1/namespaces/y/configmaps?&labelSelector={SELECTOR}"),
            format!(
                "GET /apis/mailroute.io/v1alpha1/namespaces/x/routingtables?&labelSelector={SELECTOR}"
            ),
            format!(
                "GET /apis/mailroute.io/v1alpha1/namespaces/y/routingtables?&labelSelector={SELECTOR}"
            ),
            "DELETE /apis/coordination.k8s.io/v1/namespaces/ops/leases/mailroute-operator?".into(),
        ]
    );
}

#[tokio::test]
async fn an_api_error_other_than_not_found_fails_the_run() {
    let (client, _server) = mock_api(
        Box::new(|_, _| {
            (
                403,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "Forbidden", "code": 403, "message": "forbidden"}),
            )
        }),
        "mailroute",
    );
    let err = run(client, &options(&[])).await.unwrap_err();
    assert!(err.to_string().contains("forbidden"), "{err}");
}
