//! `--configmap`: the relay follows the table through the API (feature
//! `kube`). The API server is mocked (tower-test): a list answers the first
//! table, a watch delivers the second, shards before the manifest as the
//! operator writes them. Every request must be granted to the relay's
//! ServiceAccount by the chart's RBAC (deploy/rbac.yaml).
#![cfg(feature = "kube")]

use http::{Request, Response};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::client::Body;
use relay::table::Tables;
use routing::fixtures::{authoritative, contact};
use routing::table::configmaps::table_configmaps;
use routing::table::encode;
use routing::{CompileOptions, Objects};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use testkit::{Grants, repo_file};

/// The namespace deploy/rbac.yaml grants the relay's ServiceAccount.
const NS: &str = "mailroute";

fn table(contacts: &[&str]) -> (String, Vec<ConfigMap>) {
    let mut o = Objects::default();
    o.address_spaces
        .push(authoritative("example-com", "example.com"));
    for name in contacts {
        let address = format!("{name}@example.com");
        o.contacts.push(contact(
            name,
            &[&address],
            &format!("{name}@mbx.example.com"),
        ));
    }
    let encoded = encode(routing::compile(&o, &CompileOptions::default()).table());
    let mut cms = table_configmaps("mailroute-table", NS, &encoded);
    for (i, cm) in cms.iter_mut().enumerate() {
        cm.metadata.resource_version = Some(format!("{}", 10 + i));
    }
    (encoded.manifest.version, cms)
}

async fn wait_for(tables: &Tables, version: &str) {
    for _ in 0..100 {
        if tables.current().is_some_and(|t| t.version == version) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the relay never loaded table {version}");
}

#[tokio::test]
async fn the_relay_follows_the_published_configmaps() {
    let (v1, first) = table(&["ann"]);
    let (v2, second) = table(&["ann", "bob"]);
    assert_ne!(v1, v2);
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        let mut paths = Vec::new();
        let mut watches = 0;
        while let Some((request, send)) = handle.next_request().await {
            let path = request.uri().to_string();
            paths.push(path.clone());
            let body = if !path.contains("watch=true") {
                json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": "20"}, "items": first})
                    .to_string()
            } else {
                watches += 1;
                if watches > 1 {
                    // Nothing more happens in this cluster.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                second
                    .iter()
                    .map(|cm| json!({"type": "MODIFIED", "object": cm}).to_string() + "\n")
                    .collect()
            };
            send.send_response(
                Response::builder()
                    .body(Body::from(body.into_bytes()))
                    .unwrap(),
            );
            if paths.len() >= 2 {
                return paths;
            }
        }
        paths
    });
    let tables = Arc::new(Tables::default());
    let client = Client::new(service, NS);
    let watcher = tokio::spawn(relay::configmap::run(
        client,
        NS.into(),
        "mailroute-table".into(),
        tables.clone(),
    ));
    wait_for(&tables, &v1).await;
    wait_for(&tables, &v2).await;
    let routing = &tables.current().unwrap().routing;
    assert!(
        routing
            .table()
            .addresses
            .iter()
            .any(|a| a.address == "bob@example.com")
    );
    assert_eq!(
        tables.reloads_failed.load(Ordering::Relaxed),
        0,
        "a shard seen before its manifest is not a failed load"
    );
    let paths = server.await.unwrap();
    let selector = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dmailroute%2Cmailroute.io%2Ftable%3Dmailroute-table";
    assert!(
        paths[0].starts_with("/api/v1/namespaces/mailroute/configmaps?")
            && paths[0].contains(selector),
        "{}",
        paths[0]
    );
    assert!(
        paths[1].contains("watch=true") && paths[1].contains(selector),
        "{}",
        paths[1]
    );
    Grants::of(&[&repo_file("deploy/rbac.yaml")], NS, "mailroute-relay")
        .assert_allows(paths.iter().map(|p| ("GET", p.as_str())));
    watcher.abort();
}
