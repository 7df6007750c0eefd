//! `--report-to NAMESPACE/NAME`: this relay pod's entry in the RoutingTable's
//! status, so `kubectl get routingtables` and `kubectl wait
//! --for=condition=Propagated` know which generation every relay serves
//! (cargo feature `kube`).
//!
//! One server-side apply of the pod's own list entry, as its own field
//! manager, when what it serves changes (and once at start): a relay never
//! writes on a timer, so a thousand relays cost nothing while nothing
//! changes. A write that fails (no RoutingTable yet, RBAC, the API down) is
//! logged and tried again with backoff; mail is served all the while.

use crate::table::Served;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use routing::crd::RelayReport;
use routing::propagation::relay_field_manager;
use std::time::Duration;
use tokio::sync::watch;

/// Where to report, and as whom.
#[derive(Clone, Debug)]
pub struct Reporter {
    pub namespace: String,
    pub table: String,
    pub pod: String,
    pub pod_namespace: Option<String>,
}

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(60);

/// The apply body for this pod's entry.
pub fn body(r: &Reporter, served: &Served) -> serde_json::Value {
    let entry = RelayReport {
        pod: r.pod.clone(),
        pod_namespace: r.pod_namespace.clone(),
        generation: served.version.clone(),
        loaded_at: served.loaded_at.and_then(to_time),
        refused: served.refused.clone(),
    };
    serde_json::json!({
        "apiVersion": routing::crd::API_VERSION,
        "kind": "RoutingTable",
        "metadata": { "name": r.table },
        "status": { "relays": [entry] },
    })
}

fn to_time(t: std::time::SystemTime) -> Option<Time> {
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    let ts = k8s_openapi::jiff::Timestamp::from_second(i64::try_from(secs).ok()?).ok()?;
    Some(Time(ts))
}

/// Reports every change of `served` until the process ends.
pub async fn run(client: kube::Client, r: Reporter, mut served: watch::Receiver<Served>) {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(routing::crd::GROUP, routing::crd::VERSION, "RoutingTable"),
        "routingtables",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client, &r.namespace, &resource);
    let params = PatchParams::apply(&relay_field_manager(&r.pod)).force();
    let what = format!("RoutingTable {}/{}", r.namespace, r.table);
    loop {
        let state = served.borrow_and_update().clone();
        let mut wait = FIRST_RETRY;
        let mut last_error = String::new();
        // Until this state is reported, or a newer one replaces it.
        let reported = loop {
            let result = api
                .patch_status(&r.table, &params, &Patch::Apply(body(&r, &state)))
                .await;
            match result {
                Ok(_) => {
                    if !last_error.is_empty() {
                        tracing::info!(routing_table = %what, "reporting works again");
                    }
                    tracing::debug!(routing_table = %what, version = ?state.version, "reported what this relay serves");
                    break true;
                }
                Err(e) => {
                    let error = e.to_string();
                    if error != last_error {
                        tracing::warn!(routing_table = %what, error = %error, retry_in_s = wait.as_secs(), "cannot report what this relay serves; mail is served all the same");
                        last_error = error;
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                changed = served.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break false;
                }
            }
            wait = (wait * 2).min(LAST_RETRY);
        };
        if reported && served.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_this_pods_entry_only() {
        let r = Reporter {
            namespace: "mail".into(),
            table: "mailroute-table".into(),
            pod: "relay-1".into(),
            pod_namespace: Some("mailroute".into()),
        };
        let served = Served {
            version: Some("abc".into()),
            loaded_at: Some(std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
            refused: None,
        };
        assert_eq!(
            body(&r, &served),
            serde_json::json!({
                "apiVersion": "mailroute.io/v1alpha1",
                "kind": "RoutingTable",
                "metadata": {"name": "mailroute-table"},
                "status": {"relays": [{
                    "pod": "relay-1",
                    "podNamespace": "mailroute",
                    "generation": "abc",
                    "loadedAt": "2027-01-15T08:00:00Z",
                }]},
            })
        );
    }
}
