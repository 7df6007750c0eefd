//! The relay under continuous load while its pods change (e2e/run.sh
//! cluster): a rolling update, and scaling 2 → 4 → 2. Every message the
//! relay acknowledged must be at a sink, and no connection may be refused
//! or broken: a leaving relay keeps accepting until the Service stops
//! sending to it.

use e2e::cluster::*;
use e2e::load::{Load, Report};
use e2e::*;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::Api;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

const WORKERS: usize = 8;

fn load_on(relay: std::net::SocketAddr, run: &str) -> Load {
    Load::start(
        relay,
        WORKERS,
        vec!["ann@example.test".into(), "bob@example.test".into()],
        run,
    )
}

/// Checks the report against what the sinks have: nothing acknowledged is
/// missing, nothing failed; the figure line for the docs.
async fn verify(sinks: &TestNamespace, report: &Report, what: &str) -> String {
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    // The sinks print each message a moment after they said 250.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for sink in ["a", "b"] {
        for s in sink_subjects(&sinks.client, &sinks.name, sink).await {
            *received.entry(s).or_default() += 1;
        }
    }
    let acknowledged = report.acknowledged();
    let lost: Vec<&&str> = acknowledged
        .iter()
        .filter(|s| !received.contains_key(**s))
        .collect();
    let duplicates = received.values().filter(|n| **n > 1).count();
    let failures = report.failures();
    let figure = format!(
        "{what}: {} messages sent in {:.0} s, {} acknowledged, {} lost, {duplicates} duplicated, failed: {failures:?}",
        report.outcomes.len(),
        report.elapsed.as_secs_f64(),
        acknowledged.len(),
        lost.len()
    );
    record_figure(&figure);
    assert!(
        lost.is_empty(),
        "{what}: acknowledged but at no sink: {lost:?}"
    );
    assert!(
        failures.is_empty(),
        "{what}: {figure}\n{:#?}",
        report.failure_list()
    );
    assert!(
        acknowledged.len() > 100,
        "{what}: too little load to mean anything: {figure}"
    );
    figure
}

/// Watches the relay's PodDisruptionBudget until stopped: the fewest
/// healthy pods seen, and whether it ever had fewer than it demands.
fn watch_pdb(
    release: &Release,
) -> (
    Arc<AtomicBool>,
    Arc<AtomicI32>,
    tokio::task::JoinHandle<Vec<String>>,
) {
    let api = Api::<PodDisruptionBudget>::namespaced(release.client.clone(), &release.namespace);
    let name = release.relay.clone();
    let running = Arc::new(AtomicBool::new(true));
    let fewest = Arc::new(AtomicI32::new(i32::MAX));
    let (r, f) = (running.clone(), fewest.clone());
    let task = tokio::spawn(async move {
        let mut breaches = Vec::new();
        while r.load(Ordering::Relaxed) {
            if let Ok(pdb) = api.get(&name).await {
                let s = pdb.status.unwrap_or_default();
                f.fetch_min(s.current_healthy, Ordering::Relaxed);
                if s.current_healthy < s.desired_healthy {
                    breaches.push(format!(
                        "{} healthy < {} desired",
                        s.current_healthy, s.desired_healthy
                    ));
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        breaches
    });
    (running, fewest, task)
}

/// Waits until the relay Deployment is rolled out and no old pod is left
/// (each has drained and exited).
async fn rolled_out(release: &Release, within: Duration) {
    wait_deployment_ready(&release.client, &release.namespace, &release.relay, within).await;
    let start = Instant::now();
    loop {
        let pods = release.relay_pods().await;
        if pods.iter().all(|p| p.metadata.deletion_timestamp.is_none()) {
            return;
        }
        assert!(start.elapsed() < within, "old relay pods still there");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
#[cfg_attr(
    not(e2e_cluster),
    ignore = "needs the chart installed on a cluster: e2e/run.sh cluster"
)]
async fn a_rolling_update_under_load_loses_nothing_and_refuses_no_connection() {
    let release = Release::from_env().await;
    let sinks = sinks_and_routing(&release).await;
    let relay = release.relay_node_port().await;
    wait_until_routed(relay).await;
    let before: Vec<String> = release
        .relay_pods()
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();

    let load = load_on(relay, "roll");
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!("rollout restart at +2.0 s");
    let (pdb_running, fewest, pdb) = watch_pdb(&release);
    let started = Instant::now();
    kubectl(&[
        "rollout",
        "restart",
        &format!("deploy/{}", release.relay),
        "-n",
        &release.namespace,
    ]);
    rolled_out(&release, Duration::from_secs(300)).await;
    let rollout = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;
    pdb_running.store(false, Ordering::Relaxed);
    let breaches = pdb.await.unwrap();

    let after: Vec<String> = release
        .relay_pods()
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "every pod replaced: {before:?} → {after:?}"
    );
    assert!(
        breaches.is_empty(),
        "the PodDisruptionBudget was breached: {breaches:?}"
    );
    let figure = verify(&sinks, &report, "relay rolling update under load").await;
    eprintln!(
        "{figure}; rollout {:.0} s; fewest healthy relay pods {}",
        rollout.as_secs_f64(),
        fewest.load(Ordering::Relaxed)
    );
}

#[tokio::test]
#[cfg_attr(
    not(e2e_cluster),
    ignore = "needs the chart installed on a cluster: e2e/run.sh cluster"
)]
async fn scaling_two_four_two_under_load_loses_nothing_and_new_pods_serve_the_current_table() {
    let release = Release::from_env().await;
    let sinks = sinks_and_routing(&release).await;
    let relay = release.relay_node_port().await;
    wait_until_routed(relay).await;
    let version = published_version(&release).await;
    let deploy = format!("deploy/{}", release.relay);

    let load = load_on(relay, "scale");
    tokio::time::sleep(Duration::from_secs(2)).await;
    kubectl(&["scale", &deploy, "--replicas=4", "-n", &release.namespace]);
    // Each new pod is Ready only once it serves the current table.
    let start = Instant::now();
    let mut checked = std::collections::BTreeSet::new();
    while checked.len() < 4 {
        for pod in release.relay_pods().await.iter().filter(|p| is_ready(p)) {
            let name = pod.name_any();
            if checked.insert(name.clone()) {
                let (code, body) = release.pod_get(&name, 9090, "/readyz").await;
                assert_eq!(
                    (code, body.trim()),
                    (200, format!("ready: table {version}").as_str()),
                    "{name}"
                );
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "4 relay pods never Ready: {checked:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    kubectl(&["scale", &deploy, "--replicas=2", "-n", &release.namespace]);
    rolled_out(&release, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;
    assert_eq!(release.relay_pods().await.len(), 2);
    verify(&sinks, &report, "relay scaled 2 → 4 → 2 under load").await;
}
