//! `mailroute operator`: the kube-rs controller (docs/design.md, "The operator").
//!
//! Data flow: [`caches`] (reflectors; every change names a namespace) →
//! the kube-rs applier (debounced per namespace) → [`reconcile`]
//! (dereference → compile → [`publish`] → [`status`] → Events); beside it,
//! [`propagate`] keeps each namespace's RoutingTable (what was published,
//! which relays serve it). Only the [`leader`] writes. Operations:
//! `/metrics`, `/healthz`, `/readyz`.

pub mod caches;
pub mod coalesce;
pub mod health;
pub mod leader;
pub mod metrics;
pub mod propagate;
pub mod publish;
pub mod reconcile;
pub mod routing_table;
pub mod self_addresses;
pub mod status;

use caches::Caches;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::Client;
use kube::api::{Api, ObjectMeta};
use kube::runtime::controller::{Config, applier};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, store::Writer};
use kube::runtime::watcher;
use leader::Leadership;
use reconcile::{Context, Settings};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Watch this namespace (repeatable, or comma-separated); none = every namespace.
    #[arg(
        short = 'n',
        long = "namespace",
        env = "MAILROUTE_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// The name of the published table's ConfigMap(s).
    #[arg(long, env = "MAILROUTE_TABLE_NAME", default_value = "mailroute-table")]
    pub table_name: String,
    /// Quiet time after the last change before a namespace is compiled.
    #[arg(long, env = "MAILROUTE_DEBOUNCE_MS", default_value_t = 500)]
    pub debounce_ms: u64,
    /// A namespace that keeps changing is still compiled at least this long
    /// after its first change not yet compiled.
    #[arg(long, env = "MAILROUTE_MAX_DELAY_MS", default_value_t = 2000)]
    pub max_delay_ms: u64,
    /// Where the relay pods run (the chart: the release namespace). Each
    /// relay pod's label `mailroute.io/table-namespace` names whose table it
    /// serves; a RoutingTable is Propagated when every Ready one serves the
    /// published generation. Unset: every relay that reports counts.
    #[arg(long, env = "MAILROUTE_RELAY_NAMESPACE")]
    pub relay_namespace: Option<String>,
    /// Seconds a Ready relay pod may take to report a newly published
    /// generation (from its publication, or from when the pod became Ready
    /// if later). Past it, a relay whose last report names an older
    /// generation is counted as not reporting (Propagated Unknown), not as
    /// behind: it may serve the new table and be unable to write. Leave
    /// room for the kubelet's ConfigMap sync when relays mount the table.
    #[arg(long, env = "MAILROUTE_REPORT_DEADLINE", default_value_t = 120)]
    pub report_deadline: u64,
    /// The relay's Service (`NAME` in the operator's namespace, or `NAMESPACE/NAME`):
    /// its DNS names and addresses count as the relay itself for ForwardsToSelf.
    #[arg(long, env = "MAILROUTE_RELAY_SERVICE")]
    pub relay_service: Option<String>,
    /// More names or addresses of the relay itself (repeatable).
    #[arg(
        long = "self",
        env = "MAILROUTE_SELF",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    pub self_addresses: Vec<String>,
    /// The cluster's DNS domain, for the relay Service's full name.
    #[arg(
        long,
        env = "MAILROUTE_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    pub cluster_domain: String,
    /// Take part in leader election (turn off only for a single replica).
    #[arg(long, env = "MAILROUTE_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// The coordination.k8s.io Lease for leader election.
    #[arg(
        long,
        env = "MAILROUTE_LEASE_NAME",
        default_value = "mailroute-operator"
    )]
    pub lease_name: String,
    /// The Lease's namespace (default: the operator's own).
    #[arg(long, env = "MAILROUTE_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Seconds a lease lasts without renewal.
    #[arg(long, env = "MAILROUTE_LEASE_DURATION", default_value_t = 15)]
    pub lease_duration: u64,
    /// This replica's identity in the election (default: the host name, i.e. the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    #[arg(long, env = "MAILROUTE_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    pub metrics_listen: SocketAddr,
    /// Namespaces reconciled at once.
    #[arg(long, env = "MAILROUTE_CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,
    /// Status writes in flight at once within one namespace.
    #[arg(long, env = "MAILROUTE_STATUS_CONCURRENCY", default_value_t = 8)]
    pub status_concurrency: usize,
    /// How often the relay Service is read again for its addresses.
    #[arg(long, env = "MAILROUTE_SERVICE_REFRESH_SECONDS", default_value_t = 30)]
    pub service_refresh_seconds: u64,
}

/// The applier's key store: one synthetic Namespace object per namespace
/// that has ever held a mailroute object. Nothing is read from the
/// Namespace API (no cluster-wide permission needed).
struct Namespaces {
    writer: Mutex<Writer<Namespace>>,
    known: Mutex<BTreeSet<String>>,
}

impl Namespaces {
    fn object(name: &str) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        }
    }

    fn touch(&self, name: &str) -> ObjectRef<Namespace> {
        if self.known.lock().expect("ns lock").insert(name.to_owned()) {
            self.writer
                .lock()
                .expect("ns lock")
                .apply_watcher_event(&watcher::Event::Apply(Namespaces::object(name)));
        }
        ObjectRef::new(name)
    }

    /// Releases the applier once the caches are complete.
    fn mark_ready(&self) {
        let known = self.known.lock().expect("ns lock").clone();
        let mut w = self.writer.lock().expect("ns lock");
        w.apply_watcher_event(&watcher::Event::Init);
        for name in &known {
            w.apply_watcher_event(&watcher::Event::InitApply(Namespaces::object(name)));
        }
        w.apply_watcher_event(&watcher::Event::InitDone);
    }
}

/// How long reconciles in flight may go on after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Runs the operator against the cluster of the kubeconfig (or the pod's
/// service account) until SIGTERM.
pub async fn run(o: Options) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    run_with(client, o, ops::shutdown_signal()).await
}

/// Runs the operator with `client` until `shutdown` resolves, then releases
/// the lease.
pub async fn run_with(
    client: Client,
    o: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let own_namespace = client.default_namespace().to_owned();
    let identity = o.identity.clone().unwrap_or_else(hostname);
    tracing::info!(namespaces = ?o.namespaces, table = %o.table_name, identity = %identity, "mailroute operator starting");

    let health = Arc::new(health::Health::default());
    let (caches, watched) = caches::watch(
        &client,
        &o.namespaces,
        o.relay_namespace.as_deref(),
        health.clone(),
    );
    let election = if o.leader_elect {
        let lease_ns = o
            .lease_namespace
            .clone()
            .unwrap_or_else(|| own_namespace.clone());
        Some(
            leader::elect(
                client.clone(),
                &lease_ns,
                &o.lease_name,
                &identity,
                o.lease_duration,
            )
            .await?,
        )
    } else {
        None
    };
    let leadership = election
        .as_ref()
        .map_or_else(|| Leadership::fixed(true), |e| e.leadership.clone());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "mailroute-operator".into(),
            instance: Some(identity.clone()),
        },
    );
    let settings = Settings {
        table_name: o.table_name.clone(),
        relay_namespace: o.relay_namespace.clone(),
        status_concurrency: o.status_concurrency,
        report_deadline: Duration::from_secs(o.report_deadline),
        ..Settings::default()
    };
    let mut ctx = Context::new(
        client.clone(),
        caches.clone(),
        settings,
        o.self_addresses.clone(),
        leadership.clone(),
        recorder,
    );
    ctx.health = health;
    let ctx = Arc::new(ctx);

    // Requests to reconcile every namespace: on becoming leader, and when
    // the relay's own addresses change.
    let (all_tx, all_rx) = mpsc::unbounded_channel::<()>();
    // Tasks that hold the context (and so the leadership) until shutdown.
    let mut background = Vec::new();
    if let Some(service) = &o.relay_service {
        let (ns, name) = self_addresses::parse_service_ref(service, &own_namespace);
        background.push(tokio::spawn(refresh_self_addresses(
            Api::namespaced(client.clone(), ns),
            name.to_owned(),
            o.cluster_domain.clone(),
            o.self_addresses.clone(),
            Duration::from_secs(o.service_refresh_seconds.max(1)),
            ctx.clone(),
            all_tx.clone(),
        )));
    }
    if let Some(wake) = ctx.take_published_rx() {
        background.push(tokio::spawn(propagate::run(
            ctx.clone(),
            wake,
            watched.propagation,
        )));
    }
    background.push(tokio::spawn(follow_leadership(
        leadership.clone(),
        ctx.clone(),
        all_tx.clone(),
    )));

    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(o.metrics_listen)
        .await
        .map_err(|e| anyhow::anyhow!("--metrics-listen {}: {e}", o.metrics_listen))?;
    background.push(tokio::spawn(ops::serve(listener, {
        let (ctx, ready) = (ctx.clone(), ready.clone());
        move |path| respond(&ctx, &ready, path)
    })));

    let (store, writer) = reflector::store::<Namespace>();
    let namespaces = Arc::new(Namespaces {
        writer: Mutex::new(writer),
        known: Mutex::default(),
    });
    tokio::spawn({
        let (caches, namespaces, ready) = (caches.clone(), namespaces.clone(), ready.clone());
        async move {
            caches.wait_until_ready().await;
            for ns in caches.namespaces() {
                namespaces.touch(&ns);
            }
            namespaces.mark_ready();
            ready.store(true, Ordering::Relaxed);
            tracing::info!("caches synced");
        }
    });

    // Shutdown stops the queue at once. The applier would then still wait
    // for every requeue it has scheduled (a backoff of minutes), holding
    // the lease until the kubelet kills the pod; so reconciles in flight get
    // STOP_GRACE, and whatever is pending is left to the next leader.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopping = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let delays = (
        Duration::from_millis(o.debounce_ms),
        Duration::from_millis(o.max_delay_ms.max(o.debounce_ms)),
    );
    let queue = queue(
        watched.compile,
        delays,
        all_rx,
        caches.clone(),
        namespaces.clone(),
    )
    .take_until(stopping(stop_rx.clone()));
    // Coalescing happens in the queue (quiet time with a bound); the
    // applier's own debounce has no bound, so it is not used.
    let config = Config::default().concurrency(o.concurrency);
    let reconciling = applier(
        |ns, ctx| Box::pin(reconcile::reconcile(ns, ctx)),
        reconcile::error_policy,
        ctx.clone(),
        store,
        queue,
        config,
    )
    .for_each(|result| async move {
        if let Err(e) = result {
            tracing::debug!(error = %e, "applier");
        }
    });
    tokio::select! {
        () = reconciling => {}
        () = async {
            stopping(stop_rx).await;
            tokio::time::sleep(STOP_GRACE).await;
        } => tracing::info!("stopped with reconciles pending; the next leader does them"),
    }

    tracing::info!("shutting down: releasing the lease");
    // The lease is released once every holder of the leadership is gone.
    for task in &background {
        task.abort();
    }
    for task in background {
        let _ = task.await;
    }
    drop(ctx);
    drop(leadership);
    if let Some(e) = election {
        drop(e.leadership);
        let _ = tokio::time::timeout(Duration::from_secs(5), e.task).await;
    }
    Ok(())
}

/// Every change (coalesced per namespace: quiet time, maximum delay), and
/// every "reconcile all", as the namespace keys to reconcile.
fn queue(
    changes: Vec<caches::Changes>,
    (quiet, max_delay): (Duration, Duration),
    all_rx: mpsc::UnboundedReceiver<()>,
    caches: Caches,
    namespaces: Arc<Namespaces>,
) -> impl futures::Stream<Item = Result<ObjectRef<Namespace>, std::convert::Infallible>> {
    let changed = coalesce::coalesce(futures::stream::select_all(changes), quiet, max_delay);
    let by_change = changed.map({
        let namespaces = namespaces.clone();
        move |ns| vec![namespaces.touch(&ns)]
    });
    let all = tokio_stream_from(all_rx).map(move |()| {
        caches
            .namespaces()
            .iter()
            .map(|ns| namespaces.touch(ns))
            .collect::<Vec<_>>()
    });
    futures::stream::select(by_change, all)
        .flat_map(futures::stream::iter)
        .map(Ok)
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn follow_leadership(
    mut leadership: Leadership,
    ctx: Arc<Context>,
    all: mpsc::UnboundedSender<()>,
) {
    ctx.metrics.leader.set(i64::from(leadership.is_leader()));
    while let Some(leader) = leadership.changed().await {
        ctx.metrics.leader.set(i64::from(leader));
        if leader {
            tracing::info!("became the leader: reconciling every namespace");
            let _ = all.send(());
        } else {
            tracing::warn!("lost the lease: writes stopped");
        }
    }
}

async fn refresh_self_addresses(
    api: Api<Service>,
    name: String,
    cluster_domain: String,
    extra: Vec<String>,
    every: Duration,
    ctx: Arc<Context>,
    all: mpsc::UnboundedSender<()>,
) {
    loop {
        match api.get(&name).await {
            Ok(service) => {
                let mut addresses = extra.clone();
                addresses.extend(self_addresses::of_service(&service, &cluster_domain));
                addresses.sort();
                addresses.dedup();
                let changed = {
                    let mut current = ctx.self_addresses.write().expect("self lock");
                    let changed = *current != addresses;
                    *current = addresses;
                    changed
                };
                if changed {
                    tracing::info!(service = %name, "the relay's own addresses changed: reconciling every namespace");
                    let _ = all.send(());
                }
            }
            Err(e) => {
                tracing::warn!(service = %name, error = %e, "cannot read the relay Service; ForwardsToSelf uses --self only")
            }
        }
        tokio::time::sleep(every).await;
    }
}

fn respond(ctx: &Context, ready: &AtomicBool, path: &str) -> ops::Response {
    match path {
        "/healthz" => ops::Response::ok(ops::TEXT, "ok\n"),
        "/readyz" if ready.load(Ordering::Relaxed) => {
            if let Some(problems) = ctx.health.summary() {
                return ops::Response::unavailable(format!("not ready:\n{problems}\n"));
            }
            let role = if ctx.leader.is_leader() {
                "leader"
            } else {
                "standby"
            };
            ops::Response::ok(ops::TEXT, format!("ready ({role})\n"))
        }
        "/readyz" => ops::Response::unavailable("not ready: caches not synced\n"),
        "/metrics" => ops::Response::ok(ops::PROMETHEUS, ctx.metrics.render()),
        _ => ops::Response::not_found(),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "mailroute-operator".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A `kubectl apply` of 10,000 contacts is 10,000 watch events for one
    /// namespace in a second or so; debounced, they compile a handful of times.
    #[tokio::test]
    async fn a_burst_of_changes_compiles_a_handful_of_times() {
        let (store, writer) = reflector::store::<Namespace>();
        let namespaces = Arc::new(Namespaces {
            writer: Mutex::new(writer),
            known: Mutex::default(),
        });
        let (tx, rx) = mpsc::unbounded_channel::<String>();
        let (_all_tx, all_rx) = mpsc::unbounded_channel::<()>();
        let changes: Vec<caches::Changes> = vec![Box::pin(tokio_stream_from(rx))];
        namespaces.touch("mail");
        namespaces.touch("other");
        namespaces.mark_ready();
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let applier = tokio::spawn(
            applier(
                move |ns: Arc<Namespace>, _: Arc<()>| {
                    if ns.metadata.name.as_deref() == Some("mail") {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                    futures::future::ready(Ok::<_, reconcile::Error>(
                        kube::runtime::controller::Action::await_change(),
                    ))
                },
                |_, _, _| kube::runtime::controller::Action::await_change(),
                Arc::new(()),
                store,
                queue(
                    changes,
                    (Duration::from_millis(500), Duration::from_secs(2)),
                    all_rx,
                    Caches::default(),
                    namespaces,
                ),
                Config::default(),
            )
            .for_each(|_| async {}),
        );
        for i in 0..10_000 {
            tx.send("mail".into()).unwrap();
            if i % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let n = runs.load(Ordering::SeqCst);
        assert!((1..=3).contains(&n), "{n} compiles for 10,000 changes");
        applier.abort();
    }
}
