//! The RoutingTable writer: one task that keeps each namespace's
//! RoutingTable saying what was published and which relays serve it.
//!
//! The reconciler hands over what it published ([`Tracker::published`])
//! and writes the RoutingTable once itself, before the objects' statuses:
//! so an object whose status is current is in the generation the
//! RoutingTable shows, and `kubectl wait --for=condition=Ready` on the
//! objects followed by `--for=condition=Propagated` on the RoutingTable
//! cannot see the generation before. Relay reports and relay pod changes
//! arrive as watch events, to the writer task. Namespaces that change
//! together are taken together; a write is made only when the status
//! differs, and only by the leader.

use super::publish::FIELD_MANAGER;
use super::reconcile::Context;
use super::routing_table::{self as rt, Published};
use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use routing::crd::RoutingTable;
use routing::propagation::{Timing, assess, relay_field_manager};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Changes that arrive within this time are written together.
const SETTLE: Duration = Duration::from_millis(50);
/// A failed write is tried again after this long.
const RETRY: Duration = Duration::from_secs(5);

/// What the reconciler published, per namespace, for the writer.
pub struct Tracker {
    /// `None`: the namespace's table was deleted.
    published: Mutex<HashMap<String, Option<(Published, Instant)>>>,
    /// The generation whose propagation time was recorded, per namespace.
    measured: Mutex<HashMap<String, String>>,
    /// When a recheck is due, per namespace (one timer at a time).
    rechecks: Mutex<HashMap<String, Instant>>,
    /// One RoutingTable writer at a time per namespace.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    wake: mpsc::UnboundedSender<String>,
}

impl Tracker {
    pub fn new() -> (Tracker, mpsc::UnboundedReceiver<String>) {
        let (wake, rx) = mpsc::unbounded_channel();
        let tracker = Tracker {
            published: Mutex::default(),
            measured: Mutex::default(),
            rechecks: Mutex::default(),
            locks: Mutex::default(),
            wake,
        };
        (tracker, rx)
    }

    /// The reconciler published `generation` in `ns` (again, perhaps): keeps
    /// the first publication's time.
    pub fn published(&self, ns: &str, mut p: Published, earlier: Option<&RoutingTable>) {
        {
            let mut all = self.published.lock().expect("published lock");
            let at = match all.get(ns) {
                // The same generation again: its first publication stands.
                Some(Some((old, at))) if old.generation == p.generation => {
                    p.published_at = old.published_at.clone();
                    *at
                }
                // New to this replica: perhaps published by the leader before.
                _ => {
                    let status = earlier.and_then(|t| t.status.as_ref());
                    if let Some(s) = status.filter(|s| s.generation.as_ref() == Some(&p.generation))
                        && let Some(at) = &s.published_at
                    {
                        p.published_at = at.clone();
                    }
                    Instant::now()
                }
            };
            all.insert(ns.to_owned(), Some((p, at)));
        }
        self.wake(ns);
    }

    /// The namespace's last object is gone, and so is its table.
    pub fn unpublished(&self, ns: &str) {
        self.published
            .lock()
            .expect("published lock")
            .insert(ns.to_owned(), None);
        self.wake(ns);
    }

    pub fn wake(&self, ns: &str) {
        let _ = self.wake.send(ns.to_owned());
    }

    /// Wakes the writer for `ns` after `after`, unless a wake is already
    /// due by then.
    fn recheck(&self, ns: &str, after: Duration) {
        let due = Instant::now() + after + SETTLE;
        {
            let mut rechecks = self.rechecks.lock().expect("rechecks lock");
            let now = Instant::now();
            if rechecks.get(ns).is_some_and(|d| *d > now && *d <= due) {
                return;
            }
            rechecks.insert(ns.to_owned(), due);
        }
        let (wake, ns) = (self.wake.clone(), ns.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep_until(due.into()).await;
            let _ = wake.send(ns);
        });
    }

    fn lock_for(&self, ns: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().expect("locks lock");
        locks.entry(ns.to_owned()).or_default().clone()
    }

    fn get(&self, ns: &str) -> Option<Option<(Published, Instant)>> {
        self.published
            .lock()
            .expect("published lock")
            .get(ns)
            .cloned()
    }
}

/// Runs until `wake` and `changes` end.
pub async fn run(
    ctx: Arc<Context>,
    wake: mpsc::UnboundedReceiver<String>,
    changes: Vec<super::caches::Changes>,
) {
    let woken = futures::stream::poll_fn({
        let mut wake = wake;
        move |cx| wake.poll_recv(cx)
    });
    let mut all = futures::stream::select(woken, futures::stream::select_all(changes));
    while let Some(first) = all.next().await {
        tokio::time::sleep(SETTLE).await;
        let mut namespaces = BTreeSet::from([first]);
        while let Some(Some(ns)) = futures::FutureExt::now_or_never(all.next()) {
            namespaces.insert(ns);
        }
        for ns in namespaces {
            sync_or_retry(&ctx, &ns).await;
        }
    }
}

/// Brings one namespace's RoutingTable up to date; a failed write is
/// logged and tried again a little later (by the writer task).
pub async fn sync_or_retry(ctx: &Context, ns: &str) {
    if let Err(e) = sync(ctx, ns).await {
        ctx.metrics.count_error("routing_table");
        tracing::warn!(namespace = %ns, error = %e, "writing the RoutingTable failed; retrying");
        let (wake, ns) = (ctx.published.wake.clone(), ns.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(RETRY).await;
            let _ = wake.send(ns);
        });
    }
}

/// Brings one namespace's RoutingTable up to date: one writer at a time
/// per namespace (the reconciler and the writer task both call this).
async fn sync(ctx: &Context, ns: &str) -> kube::Result<()> {
    if !ctx.leader.is_leader() {
        return Ok(());
    }
    let lock = ctx.published.lock_for(ns);
    let _serialised = lock.lock().await;
    let name = ctx.settings.table_name.as_str();
    let api: Api<RoutingTable> = Api::namespaced(ctx.client.clone(), ns);
    let current = ctx.caches.routing_table(ns, name);
    let published = match ctx.published.get(ns) {
        // Not reconciled since this replica started: the reconciler will say.
        None => return Ok(()),
        Some(None) => {
            if current.is_some() {
                crate::delete_if_present(&api, name).await?;
                ctx.metrics.count_write("routing_table_delete");
            }
            return Ok(());
        }
        Some(Some(p)) => p,
    };
    let (published, at) = published;
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    if current
        .as_ref()
        .is_none_or(|t| t.spec.config_map_name != name)
    {
        api.patch(name, &apply, &Patch::Apply(rt::object_body(name)))
            .await?;
        ctx.metrics.count_write("routing_table_apply");
    }
    let status = current.as_ref().and_then(|t| t.status.as_ref());
    let reports = status.map_or(&[][..], |s| &s.relays[..]);
    let pods = ctx.caches.relay_pods(ns);
    let relay_ns = ctx.settings.relay_namespace.as_deref().unwrap_or(ns);
    let now = (ctx.clock)();
    let timing = Timing {
        published_at: published.published_at.0,
        now: now.0,
        deadline: ctx.settings.report_deadline,
    };
    let propagation = assess(
        Some(&published.generation),
        relay_ns,
        reports,
        pods.as_deref(),
        &timing,
    );
    if let Some(after) = propagation.recheck_after {
        ctx.published.recheck(ns, after);
    }
    let old = status.map_or(&[][..], |s| &s.conditions[..]);
    let wanted = rt::operator_status(&published, &propagation, old, &now);
    if !rt::is_current(status, &wanted) {
        api.patch_status(name, &apply, &Patch::Apply(rt::status_body(name, &wanted)))
            .await?;
        ctx.metrics.count_write("routing_table_status");
    }
    for (_, pod) in &propagation.gone {
        let as_relay = PatchParams::apply(&relay_field_manager(pod)).force();
        api.patch_status(name, &as_relay, &Patch::Apply(rt::removal_body(name)))
            .await?;
        ctx.metrics.count_write("routing_table_status");
    }
    if propagation.status == "True" {
        let mut measured = ctx.published.measured.lock().expect("measured lock");
        if measured.get(ns) != Some(&published.generation) {
            ctx.metrics
                .propagation_duration
                .observe(at.elapsed().as_secs_f64());
            measured.insert(ns.to_owned(), published.generation.clone());
        }
    }
    Ok(())
}
