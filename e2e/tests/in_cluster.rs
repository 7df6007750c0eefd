//! The in-cluster half of the suite (e2e/run.sh kind): the operator and the
//! relay run in the cluster as the Helm chart installs them; mail goes
//! through the relay Service (kubectl port-forward) to SMTP sinks running in
//! the cluster, and a changed contact is followed.
//!
//! e2e/run.sh kind sets E2E_RELEASE_NAMESPACE (whose table the relay serves),
//! E2E_RELAY_SERVICE and E2E_SINK_IMAGE.

use e2e::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams, LogParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::time::{Duration, Instant};

fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run e2e/run.sh kind"))
}

/// A sink Deployment and Service named `sink-NAME` in `ns`.
async fn start_sink(client: &Client, ns: &str, name: &str, image: &str) {
    let app = format!("sink-{name}");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": app},
        "spec": {
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {"containers": [{
                    "name": "sink",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "args": [name, "0.0.0.0:2525"],
                    "ports": [{"containerPort": 2525, "name": "smtp"}],
                    "readinessProbe": {"tcpSocket": {"port": "smtp"}, "periodSeconds": 1}
                }]}
            }
        }
    }))
    .unwrap();
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": app},
        "spec": {"selector": {"app": app}, "ports": [{"port": 2525, "targetPort": "smtp"}]}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    Api::<Service>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
}

/// Waits until every replica of the Deployment is ready.
async fn wait_ready(client: &Client, ns: &str, name: &str, within: Duration) {
    let api = Api::<Deployment>::namespaced(client.clone(), ns);
    let start = Instant::now();
    loop {
        let d = api.get(name).await.unwrap();
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let ready = d
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        if ready >= want {
            return;
        }
        assert!(
            start.elapsed() < within,
            "{ns}/{name}: {ready}/{want} ready after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The log lines of every pod of a sink.
async fn sink_log(client: &Client, ns: &str, name: &str) -> String {
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let mut all = String::new();
    let selector = ListParams::default().labels(&format!("app=sink-{name}"));
    for pod in pods.list(&selector).await.unwrap() {
        if let Ok(log) = pods.logs(&pod.name_any(), &LogParams::default()).await {
            all.push_str(&log);
        }
    }
    all
}

#[tokio::test]
#[cfg_attr(
    not(e2e_kind),
    ignore = "needs a kind cluster with the chart installed: e2e/run.sh kind"
)]
async fn mail_through_the_relay_service_reaches_an_in_cluster_sink_and_follows_a_change() {
    let release = env("E2E_RELEASE_NAMESPACE");
    let relay_service = env("E2E_RELAY_SERVICE");
    let sinks = TestNamespace::create("e2e-sinks").await.unwrap();
    let client = sinks.client.clone();
    for name in ["a", "b"] {
        start_sink(&client, &sinks.name, name, &env("E2E_SINK_IMAGE")).await;
    }
    for name in ["a", "b"] {
        wait_ready(
            &client,
            &sinks.name,
            &format!("sink-{name}"),
            Duration::from_secs(120),
        )
        .await;
    }

    // The relay serves the release namespace's table.
    let fqdn = |name: &str| format!("[sink-{name}.{}.svc.cluster.local]:2525", sinks.name);
    let objects = objects_from_yaml(&format!(
        r#"
apiVersion: mailroute.io/v1alpha1
kind: AddressSpace
metadata: {{name: e2e-example-test}}
spec: {{domain: example.test, type: Authoritative}}
---
apiVersion: mailroute.io/v1alpha1
kind: SmtpConnector
metadata: {{name: e2e-a}}
spec:
  addressSpaces: [{{domain: a.example.test, cost: 1}}]
  smartHosts: ["{a}"]
  tls: {{mode: None}}
---
apiVersion: mailroute.io/v1alpha1
kind: SmtpConnector
metadata: {{name: e2e-b}}
spec:
  addressSpaces: [{{domain: b.example.test, cost: 1}}]
  smartHosts: ["{b}"]
  tls: {{mode: None}}
---
apiVersion: mailroute.io/v1alpha1
kind: MailContact
metadata: {{name: e2e-ann}}
spec: {{targetAddress: ann@a.example.test, proxyAddresses: [ann@example.test]}}
"#,
        a = fqdn("a"),
        b = fqdn("b"),
    ));
    apply(&client, &release, &objects).await.unwrap();
    wait_for_status(&client, &release, Duration::from_secs(60))
        .await
        .unwrap();
    // The relay turns Ready once it has loaded the published table.
    wait_ready(&client, &release, &relay_service, Duration::from_secs(120)).await;

    let port = free_port();
    let _forward = Process::start(
        &"kubectl".into(),
        &[
            "port-forward",
            "-n",
            &release,
            &format!("svc/{relay_service}"),
            &format!("{port}:25"),
        ],
    )
    .unwrap();
    let relay = format!("127.0.0.1:{port}");

    // Real mail through the relay Service to sink a.
    let start = Instant::now();
    let delivered = loop {
        match send(&relay, "sender@example.org", "ann@example.test", "first").await {
            Ok((rcpt, Some(done))) if rcpt.starts_with("250") => break done,
            other if start.elapsed() > Duration::from_secs(60) => {
                panic!("the relay never routed: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    assert!(delivered.starts_with("250"), "{delivered}");
    let log = sink_log(&client, &sinks.name, "a").await;
    assert!(
        log.contains("to [\"ann@a.example.test\"]") && log.contains("\"first\""),
        "sink a did not record the message: {log}"
    );

    // Change the contact; time until the relay routes to sink b.
    let changed = Instant::now();
    retarget_contact(
        &client,
        &release,
        "e2e-ann",
        "ann@b.example.test",
        &["ann@example.test"],
    )
    .await
    .unwrap();
    let took = probe_until(&relay, changed, Duration::from_secs(120), || async {
        sink_log(&client, &sinks.name, "b").await.contains("probe-")
    })
    .await;
    eprintln!(
        "in-cluster propagation: contact changed → relay routes the new way in {:.2} s",
        took.as_secs_f64()
    );
    delete(&client, &release, &objects).await.unwrap();
}
