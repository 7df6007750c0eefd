//! The RoutingTable on a real cluster (e2e/run.sh cluster): every relay pod
//! of the chart reports the generation it serves, `kubectl wait
//! --for=condition=Propagated` returns after an apply, and times out while
//! a relay pod is stuck on an old table; the pod's entry goes with the pod;
//! relays whose RBAC to report is cut serve the new table all the same and
//! the RoutingTable says Unknown for them, not False (e2e/cluster.sh sets
//! the operator's report deadline to 15 s).

use e2e::cluster::*;
use e2e::*;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

const FROZEN: &str = "e2e-frozen-relay";

#[tokio::test]
#[cfg_attr(
    not(e2e_cluster),
    ignore = "needs the chart installed on a cluster: e2e/run.sh cluster"
)]
async fn kubectl_wait_returns_once_every_relay_pod_serves_the_apply() {
    let release = Release::from_env().await;
    let ns = release.namespace.clone();
    let sinks = sinks_and_routing(&release).await;

    let changed = Instant::now();
    move_ann_to_b(&release).await;
    // The object's status first (generation-aware), then the RoutingTable.
    let contact = "mailcontact/e2e-ann";
    kubectl(&[
        "wait",
        "-n",
        &ns,
        "--for=condition=Ready",
        contact,
        "--timeout=60s",
    ]);
    let table = format!("routingtable/{TABLE}");
    kubectl(&[
        "wait",
        "-n",
        &ns,
        "--for=condition=Propagated",
        &table,
        "--timeout=60s",
    ]);
    let waited = changed.elapsed();
    let version = published_version(&release).await;
    let t = routing_table(&release.client, &ns).await.unwrap().unwrap();
    let status = t.status.clone().unwrap();
    assert_eq!(status.generation.as_deref(), Some(version.as_str()));
    let ready = release.ready_relays().await;
    let n = ready.len();
    assert_eq!(status.relays_serving, Some(format!("{n}/{n}")));
    for pod in &ready {
        let entry = status.relays.iter().find(|r| &r.pod == pod);
        let entry = entry.unwrap_or_else(|| panic!("no entry for {pod}: {status:?}"));
        assert_eq!(entry.generation.as_deref(), Some(version.as_str()), "{pod}");
    }
    let line = kubectl(&["get", "routingtables", "-n", &ns]);
    assert!(
        line.contains(&format!("{}   {n}/{n}", &version[..12])),
        "{line}"
    );
    let figure = format!(
        "apply -> kubectl wait --for=condition=Propagated returned: {:.2} s ({n} relay pods)",
        waited.as_secs_f64()
    );
    eprintln!("{figure}");
    record_figure(&figure);
    // Put ann back for the tests that follow.
    apply_routing(&release, &sinks.name).await;
}

#[tokio::test]
#[cfg_attr(
    not(e2e_cluster),
    ignore = "needs the chart installed on a cluster: e2e/run.sh cluster"
)]
async fn a_relay_pod_stuck_on_an_old_table_holds_propagated_false_until_it_is_gone() {
    let release = Release::from_env().await;
    let ns = release.namespace.clone();
    let _sinks = sinks_and_routing(&release).await;
    let published = published_version(&release).await;

    // A relay pod that serves a table of its own and never another: it
    // compiles fixed manifests at start. It is labelled as a relay of this
    // namespace, so the operator counts it.
    start_frozen_relay(&release).await;
    let t = wait_for_propagation(
        &release.client,
        &ns,
        Some(&published),
        "False",
        Duration::from_secs(120),
    )
    .await
    .unwrap();
    let (_, reason, message) = table_condition(&t, "Propagated").unwrap();
    assert_eq!(reason, "RelaysBehind");
    assert!(message.contains(FROZEN), "{message}");
    let frozen_serves = t
        .status
        .as_ref()
        .and_then(|s| s.relays.iter().find(|r| r.pod == FROZEN))
        .and_then(|r| r.generation.clone())
        .expect("the frozen relay reported");
    assert_ne!(frozen_serves, published);

    // kubectl wait times out, and says so.
    let table = format!("routingtable/{TABLE}");
    let out = Command::new("kubectl")
        .args([
            "wait",
            "-n",
            &ns,
            "--for=condition=Propagated",
            &table,
            "--timeout=3s",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("timed out"), "{stderr}");

    // The pod goes: so do its entry and the verdict.
    let gone = Instant::now();
    Api::<Pod>::namespaced(release.client.clone(), &ns)
        .delete(FROZEN, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    kubectl(&[
        "wait",
        "-n",
        &ns,
        "--for=condition=Propagated",
        &table,
        "--timeout=60s",
    ]);
    let t = routing_table(&release.client, &ns).await.unwrap().unwrap();
    let status = t.status.unwrap();
    assert!(
        status.relays.iter().all(|r| r.pod != FROZEN),
        "{:?}",
        status.relays
    );
    eprintln!(
        "a relay pod stuck on an old table: Propagated False ({reason}); deleted -> True in {:.2} s",
        gone.elapsed().as_secs_f64()
    );
    let _ = Api::<ConfigMap>::namespaced(release.client.clone(), &ns)
        .delete(FROZEN, &DeleteParams::default())
        .await;
}

#[tokio::test]
#[cfg_attr(
    not(e2e_cluster),
    ignore = "needs the chart installed on a cluster: e2e/run.sh cluster"
)]
async fn relays_that_cannot_report_serve_the_new_table_and_show_as_unknown() {
    let release = Release::from_env().await;
    let ns = release.namespace.clone();
    let sinks = sinks_and_routing(&release).await;
    let roles = Api::<Role>::namespaced(release.client.clone(), &ns);
    let role = roles.get(&release.relay).await.unwrap();
    let rules = role.rules.clone().unwrap_or_default();
    cut_rule(&roles, &release.relay, &rules, "routingtables/status").await;

    // The change reaches every relay (settle reads each pod's /readyz)...
    move_ann_to_b(&release).await;
    settle(&release).await;
    let version = published_version(&release).await;
    // ...and mail goes the new way...
    let relay = release.relay_node_port().await.to_string();
    let (rcpt, done) = send(&relay, "host@e2e.test", "ann@example.test", "unreported")
        .await
        .unwrap();
    assert!(rcpt.starts_with("250") && done.is_some(), "{rcpt} {done:?}");
    wait_for_subject(&sinks.client, &sinks.name, "b", "unreported").await;
    // ...but nothing says so: past the deadline the RoutingTable does not
    // guess either way.
    let t = wait_for_propagation(
        &release.client,
        &ns,
        Some(&version),
        "Unknown",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let (_, reason, message) = table_condition(&t, "Propagated").unwrap();
    assert_eq!(reason, "RelaysNotReporting", "{message}");
    let ready = release.ready_relays().await;
    for pod in &ready {
        assert!(message.contains(pod.as_str()), "{pod}: {message}");
    }
    let line = kubectl(&["get", "routingtables", "-n", &ns]);
    assert!(line.contains(&format!("0/{}", ready.len())), "{line}");
    // Each relay says why in its log.
    let log = release.pod_log(&ready[0]).await;
    assert!(
        log.contains("cannot report what this relay serves") && log.contains("forbidden"),
        "{log}"
    );

    // The rule returns as the chart is applied again: the relays' retries
    // report, and it is True again.
    let restored = Instant::now();
    release.reapply_chart();
    assert_eq!(roles.get(&release.relay).await.unwrap().rules, role.rules);
    wait_for_propagation(
        &release.client,
        &ns,
        Some(&version),
        "True",
        Duration::from_secs(120),
    )
    .await
    .unwrap();
    let figure = format!(
        "relay reporting RBAC cut: Propagated Unknown (RelaysNotReporting) while mail flows the new way; \
         True {:.1} s after the rule returned (the relays' retry backoff)",
        restored.elapsed().as_secs_f64()
    );
    eprintln!("{figure}");
    record_figure(&figure);
    apply_routing(&release, &sinks.name).await;
}

/// A relay pod under the chart's relay ServiceAccount, compiling one
/// AddressSpace from a ConfigMap, reporting to the RoutingTable.
async fn start_frozen_relay(release: &Release) {
    let ns = &release.namespace;
    let manifests: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": FROZEN},
        "data": {"objects.yaml": "apiVersion: mailroute.io/v1alpha1\nkind: AddressSpace\nmetadata: {name: frozen}\nspec: {domain: frozen.test, type: Authoritative}\n"}
    }))
    .unwrap();
    let cms = Api::<ConfigMap>::namespaced(release.client.clone(), ns);
    let _ = cms.delete(FROZEN, &DeleteParams::default()).await;
    cms.create(&PostParams::default(), &manifests)
        .await
        .unwrap();
    let field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": FROZEN, "labels": {"mailroute.io/table-namespace": ns}},
        "spec": {
            "serviceAccountName": release.relay,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "relay",
                "image": env("E2E_RELAY_IMAGE"),
                "imagePullPolicy": "Never",
                "args": ["--manifests=/m/objects.yaml", "--listen=0.0.0.0:2525",
                         "--metrics-listen=0.0.0.0:9090", "--hostname=frozen.e2e.test",
                         format!("--report-to={ns}/{TABLE}")],
                "env": [field("POD_NAME", "metadata.name"), field("POD_NAMESPACE", "metadata.namespace")],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": 9090}, "periodSeconds": 1},
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                    "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "m", "mountPath": "/m", "readOnly": true}]
            }],
            "volumes": [{"name": "m", "configMap": {"name": FROZEN}}]
        }
    }))
    .unwrap();
    let pods = Api::<Pod>::namespaced(release.client.clone(), ns);
    let _ = pods
        .delete(FROZEN, &DeleteParams::default().grace_period(0))
        .await;
    for _ in 0..100 {
        if pods.get_opt(FROZEN).await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let start = Instant::now();
    while !pods
        .get(FROZEN)
        .await
        .map(|p| is_ready(&p))
        .unwrap_or(false)
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the frozen relay never got Ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
