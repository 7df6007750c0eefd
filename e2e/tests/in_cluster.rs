//! The chart as installed (e2e/run.sh cluster): its pods, real mail from a
//! client pod and from the host through the relay Service to sink pods, and
//! the time from a change to every relay pod serving it.
//!
//! e2e/run.sh cluster sets E2E_RELEASE_NAMESPACE, E2E_RELAY_SERVICE,
//! E2E_OPERATOR_DEPLOYMENT, E2E_SINK_IMAGE and E2E_CLIENT_IMAGE, and
//! E2E_TABLE_SOURCE (watch or mount) for the propagation figure.

use e2e::cluster::*;
use e2e::load::Load;
use e2e::*;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, LogParams, PostParams};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
#[cfg_attr(
    not(e2e_cluster),
    ignore = "needs the chart installed on a cluster: e2e/run.sh cluster"
)]
async fn the_chart_runs_one_leader_a_standby_and_two_relays_under_restricted_pod_security() {
    let release = Release::from_env().await;
    let ns = Api::<Namespace>::all(release.client.clone())
        .get(&release.namespace)
        .await
        .unwrap();
    assert_eq!(
        ns.labels()
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted"),
        "the release namespace enforces the restricted Pod Security Standard"
    );
    let _sinks = sinks_and_routing(&release).await;
    let version = published_version(&release).await;

    let operators = release.operator_pods().await;
    assert_eq!(operators.len(), 2);
    let leader = release.leader().await.expect("a lease holder");
    let mut roles = Vec::new();
    for pod in &operators {
        assert!(is_ready(pod), "{} not Ready", pod.name_any());
        assert_service_account(&release, pod, &release.operator).await;
        let (code, body) = release.pod_get(&pod.name_any(), 8080, "/readyz").await;
        assert_eq!(code, 200, "{body}");
        roles.push((pod.name_any() == leader, body.trim().to_owned()));
    }
    roles.sort();
    assert_eq!(
        roles,
        [
            (false, "ready (standby)".to_owned()),
            (true, "ready (leader)".to_owned())
        ],
        "one leader (the Lease holder), one standby"
    );

    let relays = release.relay_pods().await;
    assert_eq!(relays.len(), 2);
    for pod in &relays {
        assert!(is_ready(pod), "{} not Ready", pod.name_any());
        assert_service_account(&release, pod, &release.relay).await;
        let (code, body) = release.pod_get(&pod.name_any(), 9090, "/readyz").await;
        assert_eq!(
            (code, body.trim()),
            (200, format!("ready: table {version}").as_str())
        );
    }
    eprintln!("operators: {roles:?}; relays serve {version}");
}

/// Each pod runs under the chart's own ServiceAccount.
async fn assert_service_account(release: &Release, pod: &Pod, name: &str) {
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some(name),
        "{}",
        pod.name_any()
    );
    let sa = Api::<ServiceAccount>::namespaced(release.client.clone(), &release.namespace)
        .get(name)
        .await
        .unwrap();
    assert_eq!(
        sa.labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("Helm")
    );
}

#[tokio::test]
#[cfg_attr(
    not(e2e_cluster),
    ignore = "needs the chart installed on a cluster: e2e/run.sh cluster"
)]
async fn mail_from_a_client_pod_and_from_the_host_reaches_the_sinks_as_routed() {
    let release = Release::from_env().await;
    let sinks = sinks_and_routing(&release).await;

    // From a pod, with curl's SMTP client, to the Service's cluster DNS name.
    let relay_dns = format!("{}.{}.svc.cluster.local", release.relay, release.namespace);
    let script = format!(
        "printf 'Subject: from-a-pod\\r\\n\\r\\nhello\\r\\n' > /tmp/m; \
         curl -sS smtp://{relay_dns}:25 --mail-from pod@e2e.test --mail-rcpt ann@example.test -T /tmp/m && echo ann-sent; \
         curl -sS smtp://{relay_dns}:25 --mail-from pod@e2e.test --mail-rcpt nobody@example.test -T /tmp/m 2>&1; echo nobody-exit=$?"
    );
    let log = run_client_pod(&sinks, &script).await;
    assert!(log.contains("ann-sent"), "{log}");
    assert!(
        log.contains("550") && log.contains("nobody-exit=55"),
        "the unknown recipient: {log}"
    );
    wait_for_subject(&sinks.client, &sinks.name, "a", "from-a-pod").await;

    // From the host, through the NodePort.
    let relay = release.relay_node_port().await.to_string();
    let (rcpt, done) = send(&relay, "host@e2e.test", "ann@example.test", "from-the-host")
        .await
        .unwrap();
    assert!(
        rcpt.starts_with("250") && done.as_deref().is_some_and(|d| d.starts_with("250")),
        "{rcpt} {done:?}"
    );
    let (rcpt, done) = send(&relay, "host@e2e.test", "nobody@example.test", "nobody")
        .await
        .unwrap();
    assert!(rcpt.starts_with("550 5.1.1") && done.is_none(), "{rcpt}");
    // Two next hops in one transaction: one message reaches both.
    let (replies, done) = send_to(
        &relay,
        "host@e2e.test",
        &["ann@example.test", "bob@example.test"],
        "to-two-next-hops",
    )
    .await
    .unwrap();
    assert!(
        replies.iter().all(|r| r.starts_with("250"))
            && done
                .as_deref()
                .is_some_and(|d| d.starts_with("250 2.0.0 Ok: accepted by 2 next hops")),
        "{replies:?} {done:?}"
    );
    wait_for_subject(&sinks.client, &sinks.name, "a", "from-the-host").await;
    wait_for_subject(&sinks.client, &sinks.name, "a", "to-two-next-hops").await;
    wait_for_subject(&sinks.client, &sinks.name, "b", "to-two-next-hops").await;

    // Rewritten as routed: the sink saw the contact's target.
    let log = sink_log(&sinks, "a").await;
    let line = log
        .lines()
        .find(|l| l.contains("\"from-the-host\""))
        .unwrap();
    assert!(line.contains(r#"to ["ann@a.example.test"]"#), "{line}");
}

#[tokio::test]
#[cfg_attr(
    not(e2e_cluster),
    ignore = "needs the chart installed on a cluster: e2e/run.sh cluster"
)]
async fn a_contact_moved_to_another_next_hop_under_load_never_splits_a_message() {
    // As reported: under steady load, ann's targetAddress patched to another
    // next hop made every message to her and a colleague who stayed put a
    // split message (452 4.5.3 for one of them). Now each is one
    // transaction to two next hops.
    let release = Release::from_env().await;
    let sinks = sinks_and_routing(&release).await;
    let colleague = objects_from_yaml(
        "apiVersion: mailroute.io/v1alpha1\nkind: MailContact\nmetadata: {name: e2e-carl}\nspec: {targetAddress: carl@a.example.test, proxyAddresses: [carl@example.test]}\n",
    );
    apply(&release.client, &release.namespace, &colleague)
        .await
        .unwrap();
    settle(&release).await;
    let relay = release.relay_node_port().await;
    wait_until_routed(relay).await;
    let load = Load::start(
        relay,
        4,
        vec!["ann@example.test,carl@example.test".into()],
        "moved",
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    move_ann_to_b(&release).await;
    settle(&release).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = load.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Where each acknowledged message went, recipient by recipient.
    let mut delivered: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for sink in ["a", "b"] {
        for (subject, to) in sink_deliveries(&sinks.client, &sinks.name, sink).await {
            delivered.entry(subject).or_default().extend(to);
        }
    }
    let acknowledged = report.acknowledged();
    let mut split = 0;
    let mut wrong = Vec::new();
    for subject in &acknowledged {
        let mut to = delivered.get(*subject).cloned().unwrap_or_default();
        to.sort();
        match to.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["ann@a.example.test", "carl@a.example.test"] => {}
            ["ann@b.example.test", "carl@a.example.test"] => split += 1,
            _ => wrong.push(format!("{subject}: {to:?}")),
        }
    }
    let figure = format!(
        "a contact moved to another next hop under load: {} messages to it and a colleague, {} acknowledged, {split} of them to two next hops in one transaction, {} lost or misrouted, failures {:?}",
        report.outcomes.len(),
        acknowledged.len(),
        wrong.len(),
        report.failures()
    );
    record_figure(&figure);
    assert!(wrong.is_empty(), "{figure}\n{wrong:#?}");
    assert!(
        report.failures().is_empty(),
        "{figure}\n{:#?}",
        report.failure_list()
    );
    assert!(split > 0 && acknowledged.len() > 50, "{figure}");
    Api::<routing::crd::MailContact>::namespaced(release.client.clone(), &release.namespace)
        .delete("e2e-carl", &Default::default())
        .await
        .unwrap();
}

/// Runs `script` in a pod of the client image; its log once it ended.
async fn run_client_pod(sinks: &TestNamespace, script: &str) -> String {
    let pods = Api::<Pod>::namespaced(sinks.client.clone(), &sinks.name);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "smtp-client"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "client",
                "image": env("E2E_CLIENT_IMAGE"),
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script]
            }]
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let start = Instant::now();
    loop {
        let phase = pods
            .get("smtp-client")
            .await
            .unwrap()
            .status
            .and_then(|s| s.phase);
        if matches!(phase.as_deref(), Some("Succeeded" | "Failed")) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the client pod did not finish"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    pods.logs("smtp-client", &LogParams::default())
        .await
        .unwrap()
}

async fn sink_log(sinks: &TestNamespace, name: &str) -> String {
    let pods_api = Api::<Pod>::namespaced(sinks.client.clone(), &sinks.name);
    let mut all = String::new();
    for pod in pods(&sinks.client, &sinks.name, &format!("app=sink-{name}")).await {
        all.push_str(
            &pods_api
                .logs(&pod.name_any(), &LogParams::default())
                .await
                .unwrap_or_default(),
        );
    }
    all
}

/// Apply → every relay pod serves the new table → mail goes the new way,
/// timed (relay.tableSource as E2E_TABLE_SOURCE says: watch or mount).
#[tokio::test]
#[cfg_attr(
    not(e2e_cluster),
    ignore = "needs the chart installed on a cluster: e2e/run.sh cluster"
)]
async fn a_change_reaches_every_relay_pod_and_mail_follows_it() {
    let release = Release::from_env().await;
    let source = env("E2E_TABLE_SOURCE");
    let sinks = sinks_and_routing(&release).await;
    let before = published_version(&release).await;
    let relays = release.ready_relays().await;

    let changed = Instant::now();
    move_ann_to_b(&release).await;
    let (published, version) = loop {
        let v = published_version(&release).await;
        if v != before {
            break (changed.elapsed(), v);
        }
        assert!(
            changed.elapsed() < Duration::from_secs(30),
            "never published"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut pending = relays.clone();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for pod in pending {
            let (_, body) = release.pod_get(&pod, 9090, "/readyz").await;
            if !body.contains(&version) {
                still.push(pod);
            }
        }
        pending = still;
        assert!(
            changed.elapsed() < Duration::from_secs(180),
            "relays {pending:?} never loaded {version}"
        );
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let everywhere = changed.elapsed();

    let relay = release.relay_node_port().await.to_string();
    for i in 0..10 {
        let subject = format!("after-change-{i}");
        let (rcpt, done) = send(&relay, "host@e2e.test", "ann@example.test", &subject)
            .await
            .unwrap();
        assert!(
            rcpt.starts_with("250") && done.is_some_and(|d| d.starts_with("250")),
            "{rcpt}"
        );
        wait_for_subject(&sinks.client, &sinks.name, "b", &subject).await;
    }
    let figure = format!(
        "apply -> relays serve it ({source}): published {:.2} s, all {} relay pods serving {:.2} s",
        published.as_secs_f64(),
        relays.len(),
        everywhere.as_secs_f64()
    );
    eprintln!("{figure}");
    record_figure(&figure);
    // Put ann back for the tests that follow.
    apply_routing(&release, &sinks.name).await;
}
