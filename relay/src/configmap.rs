//! `--configmap NAME`: the table read straight from the API server (cargo
//! feature `kube`). A kubelet ConfigMap volume can take a minute or more to
//! show a change; a watch sees it at once. The ConfigMaps the operator
//! publishes are watched by label; when the manifest changes, every file is
//! put together, verified exactly as in directory mode (manifest, each
//! shard's hash) and swapped in atomically. The operator writes shards
//! before the manifest, so a manifest is only ever looked at with its
//! shards already there; a table that does not verify is refused and the
//! last good one stays.

use crate::table::{Loaded, Tables, load_files, report};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use routing::table::MANIFEST_KEY;
use routing::table::configmaps::{files_of, table_selector};
use std::sync::Arc;
use std::time::Duration;

/// Events that come in a burst (one write per shard) are taken together.
const SETTLE: Duration = Duration::from_millis(100);

/// Watches the table `name` in `namespace` until the process ends.
pub async fn run(client: Client, namespace: String, name: String, tables: Arc<Tables>) {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().labels(&table_selector(&name));
    let (store, writer) = reflector::store();
    let mut events = Box::pin(
        reflector::reflector(writer, watcher(api, config).default_backoff()).filter_map(
            |e| async move {
                match e {
                    Ok(watcher::Event::InitDone | watcher::Event::Apply(_) | watcher::Event::Delete(_)) => Some(()),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "watching the table's ConfigMaps failed; retrying");
                        None
                    }
                }
            },
        ),
    );
    let origin = format!("ConfigMap {namespace}/{name}");
    let mut tried: Option<String> = None;
    while events.next().await.is_some() {
        tokio::time::sleep(SETTLE).await;
        // Take whatever else arrived meanwhile.
        while let Some(Some(())) = futures::FutureExt::now_or_never(events.next()) {}
        if let Some(result) = reload(&store, &origin, &mut tried) {
            report(&result);
            tables.record(&result);
        }
    }
}

/// Loads the table when its manifest is not the one last tried.
fn reload(
    store: &Store<ConfigMap>,
    origin: &str,
    tried: &mut Option<String>,
) -> Option<Result<Arc<Loaded>, String>> {
    let configmaps = store.state();
    let files = files_of(configmaps.iter().map(Arc::as_ref));
    let Some(manifest) = files.get(MANIFEST_KEY) else {
        if tried.is_none() {
            tracing::warn!(origin, "no table published yet");
            *tried = Some(String::new());
        }
        return None;
    };
    let manifest = String::from_utf8_lossy(manifest).into_owned();
    if tried.as_ref() == Some(&manifest) {
        return None;
    }
    *tried = Some(manifest);
    Some(load_files(origin, &files).map(Arc::new))
}
