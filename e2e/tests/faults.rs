//! Faults on the installed chart (e2e/run.sh cluster): the leader deleted
//! under a stream of changes, the operator's RBAC cut and restored, an
//! object the operator cannot read, and a relay killed mid-transaction.

use e2e::cluster::*;
use e2e::*;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use routing::Decision;
use serde_json::json;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the published table sends `address` now (its rewritten recipient).
async fn routed_to(release: &Release, address: &str) -> Option<String> {
    let files = published_files(&release.client, &release.namespace)
        .await
        .ok()?;
    let (_, table) = routing::table::load_routing(|k| files.get(k).map(Vec::as_slice)).ok()?;
    match table.resolve(address, false) {
        Decision::Forward { recipient, .. } => Some(recipient),
        Decision::Reply(_) => None,
    }
}

async fn set_stream_target(release: &Release, n: usize) {
    retarget_contact(
        &release.client,
        &release.namespace,
        "e2e-stream",
        &format!("s{n}@a.example.test"),
        &["stream@example.test"],
    )
    .await
    .unwrap();
}

#[tokio::test]
#[cfg_attr(
    not(e2e_cluster),
    ignore = "needs the chart installed on a cluster: e2e/run.sh cluster"
)]
async fn the_standby_takes_over_when_the_leader_is_deleted_under_a_stream_of_changes() {
    let release = Release::from_env().await;
    let _sinks = sinks_and_routing(&release).await;
    set_stream_target(&release, 0).await;
    settle(&release).await;
    let old = release.leader().await.expect("a leader");

    // A change every 250 ms, before, during and after the leader goes.
    let stream = {
        let release = Release::from_env().await;
        tokio::spawn(async move {
            let mut applied = Vec::new();
            for n in 1..=200 {
                set_stream_target(&release, n).await;
                applied.push((n, Instant::now()));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            applied
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let deleted = Instant::now();
    Api::<Pod>::namespaced(release.client.clone(), &release.namespace)
        .delete(&old, &DeleteParams::default())
        .await
        .unwrap();
    // The first change made after the deletion that reaches the table.
    let latest_at_deletion = routed_to(&release, "stream@example.test").await;
    let taken_over = loop {
        let now = routed_to(&release, "stream@example.test").await;
        let leader = release.leader().await;
        if now != latest_at_deletion && leader.as_deref().is_some_and(|l| l != old) {
            break deleted.elapsed();
        }
        assert!(
            deleted.elapsed() < Duration::from_secs(60),
            "no change published after the leader left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stream.abort();
    let new = release.leader().await.unwrap();
    let figure = format!(
        "operator failover: leader {old} deleted under a change every 250 ms; {new} published the next change {:.1} s later (lease duration 15 s)",
        taken_over.as_secs_f64()
    );
    record_figure(&figure);
    assert!(taken_over < Duration::from_secs(17), "{figure}");
    wait_deployment_ready(
        &release.client,
        &release.namespace,
        &release.operator,
        Duration::from_secs(120),
    )
    .await;
}

#[tokio::test]
#[cfg_attr(
    not(e2e_cluster),
    ignore = "needs the chart installed on a cluster: e2e/run.sh cluster"
)]
async fn an_operator_whose_rbac_is_cut_says_so_and_recovers_when_it_returns() {
    let release = Release::from_env().await;
    let sinks = sinks_and_routing(&release).await;
    let roles = Api::<ClusterRole>::all(release.client.clone());
    let role = roles.get(&release.operator).await.unwrap();
    let rules = role.rules.clone().unwrap_or_default();
    cut_rule(&roles, &release.operator, &rules, "configmaps").await;

    let cut = Instant::now();
    move_ann_to_b(&release).await;
    let leader = release.leader().await.unwrap();
    let readyz = loop {
        let (code, body) = release.pod_get(&leader, 8080, "/readyz").await;
        if code == 503 {
            break body;
        }
        assert!(
            cut.elapsed() < Duration::from_secs(60),
            "/readyz never said what is wrong"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let reported = cut.elapsed();
    assert!(
        readyz.contains("forbidden") && readyz.contains("configmaps"),
        "{readyz}"
    );
    let log = release.pod_log(&leader).await;
    assert!(
        log.lines()
            .any(|l| l.contains("reconcile failed") && l.contains("forbidden")),
        "no clear error in the log:\n{log}"
    );

    // The rule returns as it would in practice: the chart is applied again.
    let restored = Instant::now();
    release.reapply_chart();
    assert_eq!(
        roles
            .get(&release.operator)
            .await
            .unwrap()
            .rules
            .unwrap_or_default()
            .len(),
        rules.len()
    );
    loop {
        let (code, body) = release.pod_get(&leader, 8080, "/readyz").await;
        let published = routed_to(&release, "ann@example.test").await;
        if code == 200 && published.as_deref() == Some("ann@b.example.test") {
            assert_eq!(body.trim(), "ready (leader)");
            break;
        }
        assert!(
            restored.elapsed() < Duration::from_secs(180),
            "never recovered: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    record_figure(&format!(
        "operator RBAC cut (ConfigMap rule removed): /readyz said so {:.1} s after the next change; published {:.1} s after the rule returned",
        reported.as_secs_f64(),
        restored.elapsed().as_secs_f64()
    ));
    apply_routing(&release, &sinks.name).await;
}

#[tokio::test]
#[cfg_attr(
    not(e2e_cluster),
    ignore = "needs the chart installed on a cluster: e2e/run.sh cluster"
)]
async fn an_object_the_operator_cannot_read_never_stops_the_others() {
    let release = Release::from_env().await;
    let sinks = sinks_and_routing(&release).await;
    // An object stored under an older, looser schema: the CRD is loosened,
    // the object created, the CRD restored (the object stays as stored).
    let crds = Api::<CustomResourceDefinition>::all(release.client.clone());
    let path = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/targetAddress";
    let crd = serde_json::to_value(crds.get("mailcontacts.mailroute.io").await.unwrap()).unwrap();
    let original = crd.pointer(path).cloned().unwrap();
    let _restore = Restore {
        namespace: release.namespace.clone(),
        path: path.to_owned(),
        original: original.clone(),
    };
    let json_patch = |value: serde_json::Value| {
        Patch::<()>::Json(
            serde_json::from_value(json!([{"op": "replace", "path": path, "value": value}]))
                .unwrap(),
        )
    };
    crds.patch(
        "mailcontacts.mailroute.io",
        &PatchParams::default(),
        &json_patch(json!({"x-kubernetes-int-or-string": true})),
    )
    .await
    .unwrap();
    let contacts = Api::<DynamicObject>::namespaced_with(
        release.client.clone(),
        &release.namespace,
        &kube::api::ApiResource::erase::<routing::crd::MailContact>(&()),
    );
    let broken = json!({
        "apiVersion": "mailroute.io/v1alpha1", "kind": "MailContact",
        "metadata": {"name": "e2e-unreadable"},
        "spec": {"targetAddress": 7, "proxyAddresses": ["seven@example.test"]}
    });
    let start = Instant::now();
    loop {
        // The API server takes a moment to serve the loosened schema.
        match contacts
            .patch(
                "e2e-unreadable",
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&broken),
            )
            .await
        {
            Ok(_) => break,
            Err(e) => assert!(start.elapsed() < Duration::from_secs(30), "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    crds.patch(
        "mailcontacts.mailroute.io",
        &PatchParams::default(),
        &json_patch(original),
    )
    .await
    .unwrap();

    // The others go on: a change to ann is published and routed.
    move_ann_to_b(&release).await;
    let start = Instant::now();
    while routed_to(&release, "ann@example.test").await.as_deref() != Some("ann@b.example.test") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the change never reached the table"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = loop {
        let o = contacts.get("e2e-unreadable").await.unwrap();
        let (_, conditions) = conditions_of(&serde_json::to_value(&o).unwrap());
        if !conditions.is_empty() {
            break conditions;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no status on the unreadable object"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        status[0],
        ("Ready".into(), "False".into(), "InvalidSpec".into())
    );
    drop(_restore);
    apply_routing(&release, &sinks.name).await;
}

/// Puts the CRD's schema back and deletes the unreadable object, even when
/// the test fails: the other tests read the namespace with the real types.
struct Restore {
    namespace: String,
    path: String,
    original: serde_json::Value,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let patch =
            json!([{"op": "replace", "path": self.path, "value": self.original}]).to_string();
        let _ = Command::new("kubectl")
            .args([
                "patch",
                "crd",
                "mailcontacts.mailroute.io",
                "--type=json",
                "-p",
                &patch,
            ])
            .stdout(Stdio::null())
            .status();
        let _ = Command::new("kubectl")
            .args([
                "delete",
                "mailcontact",
                "e2e-unreadable",
                "-n",
                &self.namespace,
                "--ignore-not-found",
            ])
            .stdout(Stdio::null())
            .status();
    }
}

/// `kubectl port-forward` to one pod's port; the local port, and the
/// process (killed when dropped).
fn port_forward(ns: &str, pod: &str, port: u16) -> (u16, Process) {
    let mut child = Command::new("kubectl")
        .args([
            "port-forward",
            "-n",
            ns,
            &format!("pod/{pod}"),
            &format!(":{port}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // Keep reading what it says: a closed pipe would stop it.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    // "Forwarding from 127.0.0.1:43321 -> 2525"
    let local = line
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("port-forward said {line:?}"));
    (local, Process(child))
}

#[tokio::test]
#[cfg_attr(
    not(e2e_cluster),
    ignore = "needs the chart installed on a cluster: e2e/run.sh cluster"
)]
async fn a_relay_killed_mid_transaction_never_acknowledged_the_message() {
    let release = Release::from_env().await;
    let sinks = sinks_and_routing(&release).await;
    let pod = release
        .relay_pods()
        .await
        .into_iter()
        .find(is_ready)
        .unwrap();
    let (port, _forward) = port_forward(&release.namespace, &pod.name_any(), 2525);
    let (mut smtp, greeting) = Smtp::connect(&format!("127.0.0.1:{port}")).await.unwrap();
    assert!(greeting.starts_with("220"), "{greeting}");
    for command in [
        "EHLO kill.e2e.test",
        "MAIL FROM:<kill@e2e.test>",
        "RCPT TO:<ann@example.test>",
        "DATA",
    ] {
        let reply = smtp.command(command).await.unwrap();
        assert!(matches!(&reply[..1], "2" | "3"), "{command}: {reply}");
    }
    smtp.send_raw(b"Subject: killed-mid-data\r\n\r\nhalf of the message\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // SIGKILL the relay's container through the runtime (no chance to reply).
    let container = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.container_id.clone())
        .expect("a container id");
    let id = container.rsplit("://").next().unwrap();
    // E2E_CRICTL reaches the pod's node's runtime; "{node}" is its name
    // (kind: "docker exec {node} crictl").
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    let crictl = env("E2E_CRICTL").replace("{node}", &node);
    let mut words = crictl.split_whitespace();
    // Its own deadline for the call (crictl's default, 2 s, is too short
    // for a busy node: the stop itself is immediate).
    let status = Command::new(words.next().unwrap())
        .args(words)
        .args(["--timeout", "30s", "stop", "--timeout", "0", id])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "{crictl} --timeout 30s stop --timeout 0 {id}"
    );
    // The final dot, after the kill: there is nobody to say 250 to it.
    let _ = smtp.send_raw(b".\r\n").await;
    let answer = tokio::time::timeout(Duration::from_secs(10), smtp.reply()).await;
    assert!(
        !matches!(&answer, Ok(Ok(reply)) if reply.starts_with("250")),
        "a killed relay acknowledged the message: {answer:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !sink_subjects(&sinks.client, &sinks.name, "a")
            .await
            .iter()
            .any(|s| s == "killed-mid-data"),
        "the half message reached the sink"
    );
    // Kubernetes restarts the container; mail flows again.
    wait_deployment_ready(
        &release.client,
        &release.namespace,
        &release.relay,
        Duration::from_secs(120),
    )
    .await;
    settle(&release).await;
    let relay = release.relay_node_port().await.to_string();
    let (rcpt, done) = send(
        &relay,
        "kill@e2e.test",
        "ann@example.test",
        "after-the-kill",
    )
    .await
    .unwrap();
    assert!(rcpt.starts_with("250") && done.is_some_and(|d| d.starts_with("250")));
    record_figure(
        "relay SIGKILLed mid-DATA: the client got no 250 and the sink no message; the container restarted and mail flowed again",
    );
}
