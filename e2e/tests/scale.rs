//! Scale on the real cluster (e2e/run.sh cluster; docs/performance.md):
//! E2E_SCALE_CONTACTS MailContacts (CI: 2,000; the documented figures:
//! 100,000) and one SmtpConnector per hundred (at most 1,000) applied by
//! server-side apply into the release namespace; then the times until the
//! table is published, every object has its status, and every relay pod
//! serves it (Propagated); one contact changed while statuses are still
//! being written, and the time until every relay pod serves that; the
//! operator's and the relays' memory when they run on this host (the kube
//! kit's node).

use e2e::cluster::*;
use e2e::*;
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use routing::crd::{MailContact, SmtpConnector};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const LABEL: &str = "mailroute.io/e2e-scale";
const CONCURRENCY: usize = 32;

fn contacts_wanted() -> usize {
    std::env::var("E2E_SCALE_CONTACTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn object(kind: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "mailroute.io/v1alpha1", "kind": kind,
        "metadata": {"name": name, "labels": {LABEL: "true"}},
        "spec": spec,
    })
}

fn contact(i: usize, connectors: usize, to: usize) -> Value {
    object(
        "MailContact",
        &format!("scale-u{i}"),
        json!({"targetAddress": format!("u{i}@c{}.scale.test", to % connectors),
               "proxyAddresses": [format!("u{i}@scale.test")]}),
    )
}

/// Applies every body with CONCURRENCY requests in flight; the seconds taken.
async fn apply_all<K>(api: &Api<K>, bodies: Vec<Value>) -> f64
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let start = Instant::now();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut writes = futures::stream::iter(bodies)
        .map(|b| {
            let (api, params) = (api.clone(), params.clone());
            async move {
                let name = b["metadata"]["name"].as_str().unwrap().to_owned();
                api.patch(&name, &params, &Patch::Apply(&b)).await.map(drop)
            }
        })
        .buffer_unordered(CONCURRENCY);
    while let Some(r) = writes.next().await {
        r.unwrap();
    }
    start.elapsed().as_secs_f64()
}

/// Follows the test's contacts on a watch; the moment all `n` have a
/// status describing their generation (a watch costs the API server far
/// less than listing 100,000 objects again and again).
async fn until_every_status_is_current(api: Api<MailContact>, n: usize) -> Instant {
    use kube::runtime::watcher;
    let config = watcher::Config::default().labels(&format!("{LABEL}=true"));
    let mut current = std::collections::HashSet::new();
    let mut events = std::pin::pin!(watcher(api, config));
    while let Some(event) = events.next().await {
        let object = match event {
            Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)) => c,
            Ok(watcher::Event::Delete(c)) => {
                current.remove(&c.name_any());
                continue;
            }
            _ => continue,
        };
        if is_current(&object) {
            current.insert(object.name_any());
        } else {
            current.remove(&object.name_any());
        }
        if current.len() == n {
            return Instant::now();
        }
    }
    panic!("the watch ended");
}

fn is_current(c: &MailContact) -> bool {
    let s = c.status.as_ref();
    s.and_then(|s| s.observed_generation) == c.metadata.generation
        && s.is_some_and(|s| !s.conditions.is_empty())
}

/// Contacts of the test whose status describes their generation.
async fn current_statuses(api: &Api<MailContact>) -> usize {
    let mut current = 0;
    let mut params = ListParams::default()
        .labels(&format!("{LABEL}=true"))
        .limit(5000);
    loop {
        let page = api.list(&params).await.unwrap();
        current += page.items.iter().filter(|c| is_current(c)).count();
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return current,
        }
    }
}

/// The leader's count of status writes so far.
async fn status_writes(release: &Release) -> u64 {
    let Some(leader) = release.leader().await else {
        return 0;
    };
    let (_, body) = release.pod_get(&leader, 8080, "/metrics").await;
    body.lines()
        .find(|l| l.starts_with("mailroute_operator_writes_total{write=\"status\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The resident and peak memory (MiB) of the process `binary` running as
/// pod `pod`, when that pod runs on this host.
fn memory_of(binary: &str, pod: &str) -> Option<(f64, f64)> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let dir = entry.path();
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        if !argv0.ends_with(binary.as_bytes()) {
            continue;
        }
        let environ = std::fs::read(dir.join("environ")).unwrap_or_default();
        let wanted = format!("POD_NAME={pod}");
        if !environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes()) {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .map(|kb| kb / 1024.0)
        };
        return Some((field("VmRSS:")?, field("VmHWM:")?));
    }
    None
}

async fn every_relay_serves(release: &Release, version: &str, within: Duration) {
    let start = Instant::now();
    loop {
        let mut behind = 0;
        for pod in release.relay_pods().await.iter().filter(|p| is_ready(p)) {
            let (_, body) = release.pod_get(&pod.name_any(), 9090, "/readyz").await;
            if !body.contains(version) {
                behind += 1;
            }
        }
        if behind == 0 {
            return;
        }
        assert!(
            start.elapsed() < within,
            "{behind} relay pod(s) never served {version}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
#[cfg_attr(
    not(e2e_cluster),
    ignore = "needs the chart installed on a cluster: e2e/run.sh cluster"
)]
async fn a_large_namespace_is_published_before_its_statuses_and_changes_still_flow() {
    let release = Release::from_env().await;
    let ns = release.namespace.clone();
    let n = contacts_wanted();
    let connectors = (n / 100).clamp(1, 1000);
    let client = release.client.clone();
    let contact_api: Api<MailContact> = Api::namespaced(client.clone(), &ns);
    let connector_api: Api<SmtpConnector> = Api::namespaced(client.clone(), &ns);
    let space_api: Api<routing::crd::AddressSpace> = Api::namespaced(client.clone(), &ns);
    let writes_before = status_writes(&release).await;
    let all_current = tokio::spawn(until_every_status_is_current(contact_api.clone(), n));

    // The space and the connectors first, so every contact is routable.
    apply_all(
        &space_api,
        vec![object(
            "AddressSpace",
            "scale-test",
            json!({"domain": "scale.test", "type": "Authoritative"}),
        )],
    )
    .await;
    let connector_bodies = (0..connectors)
        .map(|c| {
            object(
                "SmtpConnector",
                &format!("scale-c{c}"),
                json!({"addressSpaces": [{"domain": format!("c{c}.scale.test")}],
                       "smartHosts": ["[192.0.2.1]:25"]}),
            )
        })
        .collect();
    apply_all(&connector_api, connector_bodies).await;
    let bodies = (0..n).map(|i| contact(i, connectors, i)).collect();
    let applying = apply_all(&contact_api, bodies).await;
    let last_applied = Instant::now();

    // Published: the RoutingTable counts every contact.
    let published = loop {
        let t = routing_table(&client, &ns).await.unwrap();
        let counted = t
            .as_ref()
            .and_then(|t| t.status.as_ref())
            .and_then(|s| s.objects.as_ref())
            .map_or(0, |o| o.mail_contacts);
        if counted as usize >= n {
            break last_applied.elapsed();
        }
        assert!(
            last_applied.elapsed() < Duration::from_secs(600),
            "never published"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let version = published_version(&release).await;
    every_relay_serves(&release, &version, Duration::from_secs(300)).await;
    let propagated = last_applied.elapsed();
    wait_for_propagation(
        &client,
        &ns,
        Some(&version),
        "True",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let propagated_condition = last_applied.elapsed();

    // One contact changed while statuses are (at scale) still being written.
    let written_at_change = status_writes(&release).await.saturating_sub(writes_before);
    let changed = Instant::now();
    apply_all(&contact_api, vec![contact(0, connectors, 1)]).await;
    let new_version = loop {
        let v = published_version(&release).await;
        if v != version {
            break v;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(120),
            "the change was never published"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    every_relay_serves(&release, &new_version, Duration::from_secs(120)).await;
    let change_served = changed.elapsed();

    // Every status written: seen on a watch, then checked by a list.
    let statuses = all_current.await.unwrap();
    assert_eq!(current_statuses(&contact_api).await, n);

    let leader = release.leader().await.unwrap_or_default();
    let operator_memory = memory_of("mailroute", &leader)
        .map_or("not on this host".into(), |(rss, hwm)| {
            format!("{rss:.0} MiB (peak {hwm:.0} MiB)")
        });
    let relay_memory: Vec<String> = release
        .relay_pods()
        .await
        .iter()
        .filter_map(|p| memory_of("mailroute-relay", &p.name_any()))
        .map(|(rss, hwm)| format!("{rss:.0} MiB (peak {hwm:.0})"))
        .collect();
    let figure = format!(
        "scale: {n} contacts, {connectors} connectors: applied in {applying:.1} s ({:.0}/s); after the last: \
         published {:.2} s, every relay serving {:.2} s, Propagated {:.2} s, every status {:.1} s; \
         one contact changed with {written_at_change} statuses written -> every relay serving it in {:.2} s; \
         operator {operator_memory}; relays {}",
        n as f64 / applying,
        published.as_secs_f64(),
        propagated.as_secs_f64(),
        propagated_condition.as_secs_f64(),
        statuses.duration_since(last_applied).as_secs_f64(),
        change_served.as_secs_f64(),
        if relay_memory.is_empty() {
            "not on this host".into()
        } else {
            relay_memory.join(", ")
        },
    );
    eprintln!("{figure}");
    record_figure(&figure);

    // Clean up (the namespace is the release's). Best effort: at 100k the
    // API server may close a deletecollection before it is done, and
    // goes on deleting all the same.
    let by_label = ListParams::default().labels(&format!("{LABEL}=true"));
    for result in [
        contact_api
            .delete_collection(&DeleteParams::default(), &by_label)
            .await
            .map(drop),
        connector_api
            .delete_collection(&DeleteParams::default(), &by_label)
            .await
            .map(drop),
        space_api
            .delete_collection(&DeleteParams::default(), &by_label)
            .await
            .map(drop),
    ] {
        if let Err(e) = result {
            eprintln!("cleaning up: {e} (the API server goes on deleting)");
        }
    }
}
