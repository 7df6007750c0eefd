//! Reconciling one namespace: dereference → compile → publish → status →
//! events, and the error policy. The namespace is the unit: any change to
//! any of its objects compiles all of them, since a contact's routing
//! depends on every space and connector beside it.

use super::caches::{Caches, Snapshot};
use super::health::Health;
use super::leader::Leadership;
use super::metrics::Metrics;
use super::propagate::{self, Tracker};
use super::publish::{self, FIELD_MANAGER};
use super::routing_table::{Published, count_objects};
use super::status::{self, StatusUpdate};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, ResourceExt};
use routing::crd::{
    API_VERSION, AddressSpace, Kind, MailContact, RecipientPolicy, SendingGrant, SmtpConnector,
};
use routing::table::encode;
use routing::{CompileOptions, ObjectReport};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Clone, Debug)]
pub struct Settings {
    /// `--table-name`: the ConfigMap(s) the table is published as, and
    /// the RoutingTable that reports on it.
    pub table_name: String,
    /// `--relay-namespace`: where the relay pods run (relay reports that
    /// name no namespace are from there).
    pub relay_namespace: Option<String>,
    /// Status writes in flight at once (each is one small PATCH).
    pub status_concurrency: usize,
    /// `--report-deadline`: how long a Ready relay pod may take to report
    /// a new generation before Propagated reads it as not reporting.
    pub report_deadline: Duration,
    /// First and largest wait after a transient error.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            table_name: "mailroute-table".into(),
            relay_namespace: None,
            status_concurrency: 8,
            report_deadline: Duration::from_secs(120),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }
}

/// Namespace, kind, name and generation of an unreadable object.
type UnreadableKey = (String, Kind, String, Option<i64>);

pub struct Context {
    pub client: Client,
    pub caches: Caches,
    pub settings: Settings,
    /// The relay's names and addresses (`--self` plus the relay Service).
    pub self_addresses: RwLock<Vec<String>>,
    pub leader: Leadership,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// What was published, for the RoutingTable writer.
    pub published: Tracker,
    published_rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    /// Problems for /readyz: writes the API server forbids.
    pub health: Arc<Health>,
    /// The clock for `lastTransitionTime`, whole seconds (as the API stores it).
    pub clock: fn() -> Time,
    /// Consecutive transient failures per namespace, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Unreadable objects whose status was written, by namespace, kind, name
    /// and generation: their current status cannot be read to compare.
    unreadable_written: Mutex<HashSet<UnreadableKey>>,
}

impl Context {
    pub fn new(
        client: Client,
        caches: Caches,
        settings: Settings,
        self_addresses: Vec<String>,
        leader: Leadership,
        recorder: Recorder,
    ) -> Context {
        let (published, published_rx) = Tracker::new();
        Context {
            published,
            published_rx: Mutex::new(Some(published_rx)),
            client,
            caches,
            settings,
            self_addresses: RwLock::new(self_addresses),
            leader,
            recorder,
            metrics: Metrics::default(),
            health: Arc::default(),
            clock: now,
            failures: Mutex::default(),
            unreadable_written: Mutex::default(),
        }
    }
}

impl Context {
    /// The RoutingTable writer's wake-ups (once).
    pub fn take_published_rx(&self) -> Option<mpsc::UnboundedReceiver<String>> {
        self.published_rx.lock().expect("rx lock").take()
    }
}

pub fn now() -> Time {
    let t = k8s_openapi::jiff::Timestamp::now();
    Time(k8s_openapi::jiff::Timestamp::from_second(t.as_second()).expect("now is in range"))
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Write {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("lost the lease while writing; the new leader takes over")]
    LostLeadership,
}

impl Error {
    /// The API server refused the content itself: retrying the same
    /// request cannot help, so wait for a change to the objects.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Write {
                source: kube::Error::Api(status),
                ..
            } => matches!(status.code, 400 | 413 | 422),
            _ => false,
        }
    }

    /// The API server forbids the write (RBAC): the operator cannot do its
    /// job until someone grants it.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Error::Write { source: kube::Error::Api(status), .. } if matches!(status.code, 401 | 403))
    }

    pub fn metric_kind(&self) -> &'static str {
        match self {
            Error::LostLeadership => "lost_leadership",
            e if e.is_permanent() => "invalid",
            _ => "api",
        }
    }
}

fn write_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Write { what, source }
}

/// Compiles, publishes and writes status for one namespace.
pub async fn reconcile(namespace: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = namespace.name_any();
    if !ctx.leader.is_leader() {
        // Caches stay warm; the new leader reconciles everything on taking over.
        ctx.metrics.count_reconcile("skipped");
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    let result = reconcile_namespace(&ns, &ctx).await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    let writes = format!("writes in namespace {ns}");
    match &result {
        Ok(_) => {
            ctx.metrics.count_reconcile("ok");
            ctx.failures.lock().expect("failures lock").remove(&ns);
            ctx.health.clear(&writes);
        }
        Err(e) => {
            ctx.metrics.count_reconcile("error");
            ctx.metrics.count_error(e.metric_kind());
            if e.is_forbidden() {
                ctx.health.set(&writes, e);
            }
        }
    }
    result
}

async fn reconcile_namespace(ns: &str, ctx: &Context) -> Result<Action, Error> {
    // Dereference: everything from the caches, nothing from the API server.
    let changes_seen = ctx.caches.changed.of(ns);
    let snapshot = ctx.caches.snapshot(ns);
    let existing = ctx.caches.table_configmaps(ns, &ctx.settings.table_name);
    if snapshot.is_empty() {
        // The last object is gone: so is the table.
        let plan = publish::plan(Vec::new(), &existing);
        apply_plan(ns, ctx, plan).await?;
        ctx.published.unpublished(ns);
        ctx.metrics.set_table(ns, 0, 0);
        ctx.metrics.set_objects(ns, std::iter::empty());
        return Ok(Action::await_change());
    }

    // Compile (pure).
    let options = CompileOptions {
        self_addresses: ctx.self_addresses.read().expect("self lock").clone(),
    };
    let compiled = routing::compile(&snapshot.objects, &options);
    let encoded = encode(compiled.table());
    let wanted = publish::table_configmaps(&ctx.settings.table_name, ns, &encoded);
    let shards = wanted.len();

    // Publish: only what changed.
    apply_plan(ns, ctx, publish::plan(wanted, &existing)).await?;
    ctx.metrics.set_table(ns, encoded.total_bytes(), shards);
    tracing::debug!(namespace = ns, version = %encoded.manifest.version, "table published");
    let all_reports = compiled.reports.iter().chain(&snapshot.unreadable);
    let published = Published {
        generation: encoded.manifest.version.clone(),
        published_at: (ctx.clock)(),
        config_maps: u32::try_from(shards).unwrap_or(u32::MAX),
        bytes: encoded.total_bytes() as u64,
        objects: count_objects(all_reports),
    };
    let earlier = ctx.caches.routing_table(ns, &ctx.settings.table_name);
    ctx.published.published(ns, published, earlier.as_ref());
    // One small write, before the objects' statuses (see propagate).
    propagate::sync_or_retry(ctx, ns).await;

    // Status, from what was published; given up for a newer change, whose
    // table goes out first (the statuses still due are written after it).
    let newer = || ctx.caches.changed.of(ns) != changes_seen;
    if !write_statuses(ns, ctx, &snapshot, &compiled.reports, newer).await? {
        tracing::debug!(
            namespace = ns,
            "statuses left for the newer change's reconcile"
        );
        return Ok(Action::await_change());
    }
    let all_reports = compiled.reports.iter().chain(&snapshot.unreadable);
    ctx.metrics.set_objects(ns, all_reports);
    Ok(Action::await_change())
}

fn ensure_leader(ctx: &Context) -> Result<(), Error> {
    if ctx.leader.is_leader() {
        Ok(())
    } else {
        Err(Error::LostLeadership)
    }
}

async fn apply_plan(ns: &str, ctx: &Context, plan: publish::Plan) -> Result<(), Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for cm in &plan.apply {
        ensure_leader(ctx)?;
        let name = cm.name_any();
        api.patch(&name, &params, &Patch::Apply(publish::apply_body(cm)))
            .await
            .map_err(write_error(format!("applying ConfigMap {ns}/{name}")))?;
        ctx.metrics.count_write("configmap_apply");
    }
    for name in &plan.delete {
        ensure_leader(ctx)?;
        crate::delete_if_present(&api, name)
            .await
            .map_err(write_error(format!("deleting ConfigMap {ns}/{name}")))?;
        ctx.metrics.count_write("configmap_delete");
    }
    Ok(())
}

/// Writes every status that differs; false when it stopped early because
/// `newer` said a newer change is waiting.
async fn write_statuses(
    ns: &str,
    ctx: &Context,
    snapshot: &Snapshot,
    compiled: &[ObjectReport],
    newer: impl Fn() -> bool,
) -> Result<bool, Error> {
    let now = (ctx.clock)();
    let unreadable_key = |r: &ObjectReport| (ns.to_owned(), r.kind, r.name.clone(), r.generation);
    let written = ctx
        .unreadable_written
        .lock()
        .expect("unreadable lock")
        .clone();
    let unreadable_new = snapshot
        .unreadable
        .iter()
        .filter(|r| !written.contains(&unreadable_key(r)));
    let none = status::Current::default();
    // Computed as they are written, not all at once: at 100k objects the
    // bodies would be a hundred megabytes.
    let readable = compiled.iter().map(|r| (r, Write::Apply));
    let unreadable = unreadable_new.map(|r| (r, Write::Merge));
    let updates = readable.chain(unreadable).filter_map(|(r, how)| {
        let current = snapshot.current.get(&(r.kind, r.name.clone()));
        status::update(r, current.unwrap_or(&none), &now).map(|u| (u, how))
    });
    // Unordered: one slow write must not hold the others' slots (ordered
    // buffering keeps a finished write's slot until every earlier one is
    // done). Writes start in the objects' order; the error returned is the
    // one of the earliest started, whatever order they finish in.
    let mut writes = futures::stream::iter(updates.enumerate())
        .map(|(i, (u, how))| write_status(ns, ctx, u, how).map(move |r| (i, r)))
        .buffer_unordered(ctx.settings.status_concurrency.max(1));
    let mut first_error: Option<(usize, Error)> = None;
    while let Some((i, result)) = writes.next().await {
        if let Err(e) = result
            && first_error.as_ref().is_none_or(|(j, _)| i < *j)
        {
            first_error = Some((i, e));
        }
        if newer() {
            return first_error.map_or(Ok(false), |(_, e)| Err(e));
        }
    }
    let first_error = first_error.map(|(_, e)| e);
    if first_error.is_none() {
        let mut memo = ctx.unreadable_written.lock().expect("unreadable lock");
        memo.retain(|(n, ..)| n != ns);
        memo.extend(snapshot.unreadable.iter().map(unreadable_key));
    }
    first_error.map_or(Ok(true), Err)
}

/// How a status is written: by server-side apply, or, for an object that
/// does not fit its schema (stored before a schema change), by a merge
/// patch: the API server cannot build the typed object server-side apply
/// needs (it answers 500), and the status must still say what is wrong.
#[derive(Clone, Copy)]
enum Write {
    Apply,
    Merge,
}

async fn write_status(
    ns: &str,
    ctx: &Context,
    update: StatusUpdate,
    how: Write,
) -> Result<(), Error> {
    ensure_leader(ctx)?;
    let (params, patch) = match how {
        Write::Apply => (
            PatchParams::apply(FIELD_MANAGER).force(),
            Patch::Apply(status::apply_body(&update)),
        ),
        Write::Merge => (
            PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PatchParams::default()
            },
            Patch::Merge(serde_json::json!({ "status": update.status })),
        ),
    };
    let name = update.name.as_str();
    let what = format!("writing the status of {}/{name} in {ns}", update.kind);
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), ns, &api_resource(update.kind));
    let result = api.patch_status(name, &params, &patch).await.map(drop);
    match result {
        Ok(()) => {}
        // Deleted since the snapshot: nothing to report on.
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(write_error(what)(e)),
    }
    ctx.metrics.count_write("status");
    for t in &update.events {
        publish_event(ns, ctx, &update, t).await;
    }
    Ok(())
}

fn api_resource(kind: Kind) -> ApiResource {
    match kind {
        Kind::AddressSpace => ApiResource::erase::<AddressSpace>(&()),
        Kind::RecipientPolicy => ApiResource::erase::<RecipientPolicy>(&()),
        Kind::MailContact => ApiResource::erase::<MailContact>(&()),
        Kind::SmtpConnector => ApiResource::erase::<SmtpConnector>(&()),
        Kind::SendingGrant => ApiResource::erase::<SendingGrant>(&()),
    }
}

/// Events are for people: one that cannot be published is logged and
/// counted, and does not fail the reconcile (the status already says it).
async fn publish_event(ns: &str, ctx: &Context, update: &StatusUpdate, t: &status::Transition) {
    if ensure_leader(ctx).is_err() {
        return;
    }
    let reference = ObjectReference {
        api_version: Some(API_VERSION.into()),
        kind: Some(update.kind.as_str().into()),
        name: Some(update.name.clone()),
        namespace: Some(ns.into()),
        uid: update.uid.clone(),
        ..ObjectReference::default()
    };
    let event = Event {
        type_: if t.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: t.reason.clone(),
        note: Some(status::event_note(&t.note)),
        action: "Analyse".into(),
        secondary: None,
    };
    match ctx.recorder.publish(&event, &reference).await {
        Ok(()) => ctx.metrics.count_write("event"),
        Err(e) => {
            ctx.metrics.count_error("event");
            tracing::warn!(namespace = ns, object = %update.name, error = %e, "could not publish an Event");
        }
    }
}

/// A permanent error waits for a change to the namespace's objects; a
/// transient one retries with exponential backoff per namespace.
pub fn error_policy(namespace: Arc<Namespace>, error: &Error, ctx: Arc<Context>) -> Action {
    let ns = namespace.name_any();
    if error.is_permanent() {
        tracing::error!(namespace = %ns, error = %error, "reconcile failed; waiting for a change");
        return Action::await_change();
    }
    if matches!(error, Error::LostLeadership) {
        tracing::info!(namespace = %ns, "stopped writing: no longer the leader");
        return Action::await_change();
    }
    let mut failures = ctx.failures.lock().expect("failures lock");
    let n = failures.entry(ns.clone()).or_insert(0);
    *n = n.saturating_add(1);
    let delay = backoff(&ctx.settings, *n);
    tracing::warn!(namespace = %ns, error = %error, retry_in_s = delay.as_secs_f64(), "reconcile failed; retrying");
    Action::requeue(delay)
}

/// min × 2^(n-1), at most max.
pub fn backoff(settings: &Settings, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
    settings
        .backoff_min
        .saturating_mul(factor)
        .min(settings.backoff_max)
}
