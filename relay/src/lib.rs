//! mailroute-relay: a horizontally scalable SMTP relay that resolves every
//! recipient with the routing core and forwards it cut-through to its next
//! hop, saying 250 only when every recipient is accounted for
//! (docs/relay.md).
//!
//! Data flow: [`table`] (load, hot reload) → [`server`] (accept, limits) →
//! [`session`] (commands, [`lines`] strictly) → [`transaction`] (resolve
//! with the routing crate; the [`fanout`] over its next hops, each a
//! [`downstream`] connection) ← [`data`] (the message streamed to all of
//! them with a [`received`] header) → the outcome (routing crate), and a
//! [`dsn`] when it calls for one.

#[cfg(feature = "kube")]
pub mod configmap;
pub mod data;
pub mod downstream;
pub mod dsn;
pub mod fanout;
pub mod http;
pub mod identity;
pub mod io;
pub mod lines;
pub mod memory;
pub mod metrics;
pub mod networks;
pub mod proxy;
pub mod received;
pub mod reply;
#[cfg(feature = "kube")]
pub mod report;
pub mod server;
pub mod session;
pub mod table;
pub mod tls;
pub mod transaction;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Every limit named and configurable (see `mailroute-relay --help`).
#[derive(Clone, Debug)]
pub struct Config {
    pub hostname: String,
    pub relay_networks: Vec<networks::Cidr>,
    pub hop_limit: usize,
    pub max_recipients: usize,
    /// Next hops one transaction may use at once; past it, 452 4.5.3.
    pub max_next_hops: usize,
    /// The largest message returned whole in a notification (RET=FULL).
    pub bounce_size_limit: usize,
    pub max_message_size: usize,
    pub max_line_length: usize,
    pub max_connections_per_client: usize,
    pub max_errors: usize,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    pub downstream: downstream::Settings,
    /// Every connection starts with a PROXY protocol v2 header.
    pub proxy_protocol: bool,
    pub auth: identity::AuthSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: "localhost".into(),
            relay_networks: networks::parse_list("127.0.0.0/8,::1").expect("valid default"),
            hop_limit: 50,
            max_recipients: 100,
            max_next_hops: 10,
            bounce_size_limit: 50_000,
            max_message_size: 25 * 1024 * 1024,
            max_line_length: 8192,
            max_connections_per_client: 50,
            max_errors: 20,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            downstream: downstream::Settings::default(),
            proxy_protocol: false,
            auth: identity::AuthSettings::default(),
        }
    }
}

/// What every session shares.
pub struct Shared {
    pub config: Config,
    pub tables: Arc<table::Tables>,
    /// STARTTLS for clients, when a certificate is configured.
    pub tls: Option<Arc<tls::Tls>>,
    pub metrics: metrics::Metrics,
    /// AUTH, and the rate and failure limits.
    pub identity: identity::Identity,
    pub outbound: downstream::Outbound,
    pub clients: Mutex<HashMap<IpAddr, usize>>,
    pub next_session: AtomicU64,
    /// True once the relay is leaving (SIGTERM): /readyz says 503, but it
    /// still accepts until draining starts.
    leaving: std::sync::atomic::AtomicBool,
    /// True once draining started: no more connections.
    draining: watch::Sender<bool>,
    active: AtomicUsize,
    idle: Notify,
}

impl Shared {
    pub fn new(config: Config, tables: Arc<table::Tables>) -> Arc<Shared> {
        Shared::with_tls(config, tables, None)
    }

    pub fn with_tls(
        config: Config,
        tables: Arc<table::Tables>,
        tls: Option<Arc<tls::Tls>>,
    ) -> Arc<Shared> {
        Shared::build(config, tables, tls, None)
    }

    /// `tokens`: how ServiceAccount tokens are checked (None: a token
    /// never authenticates).
    pub fn build(
        config: Config,
        tables: Arc<table::Tables>,
        tls: Option<Arc<tls::Tls>>,
        tokens: Option<Arc<dyn identity::TokenReviewer>>,
    ) -> Arc<Shared> {
        let metrics = metrics::Metrics::default();
        let identity =
            identity::Identity::new(config.auth.clone(), tokens, metrics.token_reviews.clone());
        let outbound =
            downstream::Outbound::new(config.downstream.clone(), config.hostname.clone(), &metrics);
        Arc::new(Shared {
            config,
            tables,
            tls,
            metrics,
            identity,
            outbound,
            clients: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            leaving: std::sync::atomic::AtomicBool::new(false),
            draining: watch::Sender::new(false),
            active: AtomicUsize::new(0),
            idle: Notify::new(),
        })
    }

    /// Turn unready while still accepting: a Service (or a load balancer)
    /// stops sending new connections once it sees the pod go, which takes
    /// a moment; closing the listener at once would refuse the ones sent
    /// meanwhile.
    pub fn leave(&self) {
        self.leaving.store(true, Ordering::SeqCst);
    }

    /// Stop accepting; idle sessions get 421 now, the others after their
    /// transaction.
    pub fn drain(&self) {
        self.leave();
        self.draining.send_replace(true);
    }

    /// Whether /readyz must say no: leaving or draining.
    pub fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::SeqCst)
    }

    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    pub fn drain_signal(&self) -> watch::Receiver<bool> {
        self.draining.subscribe()
    }

    /// Waits until no session is open, or the timeout passes; true when all ended.
    pub async fn sessions_ended(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.idle.notified();
                if self.active.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    pub(crate) fn session_started(&self) {
        self.active.fetch_add(1, Ordering::SeqCst);
        self.metrics.sessions.inc();
        self.metrics.sessions_active.inc();
    }

    pub(crate) fn session_ended(&self) {
        self.metrics.sessions_active.dec();
        if self.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}
