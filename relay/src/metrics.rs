//! Prometheus metrics (text exposition on `/metrics`).

use crate::table::Tables;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// forward, reject, defer.
    pub decision: String,
    /// The routing reason (Routed, UnknownRecipient, …) or NextHop for the
    /// next hop's own refusals.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Transactions: delivered, refused, failed, partial_prdr,
    /// partial_notified, partial_deferred, partial_refused
    /// (routing::outcome::Outcome). Connections: opened, reused.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// Notifications: sent, deferred, refused. PRDR: per_recipient, one.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    /// PLAIN, LOGIN, other.
    pub mechanism: String,
    /// success, invalid, temporary, throttled, no_tls, malformed,
    /// cancelled, bad_sequence.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// SenderNotAllowed, HeaderFromNotAllowed, RateExceeded, TooManyRecipients.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: String,
}

pub struct Metrics {
    registry: Registry,
    pub sessions: Counter,
    pub sessions_active: Gauge,
    pub transactions: Family<OutcomeLabels, Counter>,
    /// Next hops per transaction that reached DATA.
    pub next_hops: Histogram,
    /// Transactions whose client asked for PRDR, by how they were answered.
    pub prdr: Family<ResultLabels, Counter>,
    /// Delivery status notifications the relay sent, by their fate.
    pub notifications: Family<ResultLabels, Counter>,
    /// Recipients whose next hop accepted a message the client was then
    /// told to send again (4xx) or told failed (5xx): each may get it twice.
    pub duplicate_risk: Counter,
    pub recipients: Family<DecisionLabels, Counter>,
    /// AUTH attempts by mechanism and result.
    auth: Family<AuthLabels, Counter>,
    /// MAIL commands and messages refused by the client's SendingGrant.
    grant_refusals: Family<ReasonLabels, Counter>,
    /// TokenReview requests made (tokens not in the cache).
    pub token_reviews: Counter,
    /// Seconds from sending a command to the next hop to its reply.
    pub downstream_latency: Histogram,
    /// Next-hop connections opened and reused from the pool.
    downstream_connections: Family<OutcomeLabels, Counter>,
    pub message_bytes: Counter,
    table_version: Family<VersionLabels, Gauge>,
    table_reloads: Family<OutcomeLabels, Gauge<u64, AtomicU64>>,
    table_last_reload: Gauge<u64, AtomicU64>,
    table_last_reload_ok: Gauge<u64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let sessions = Counter::default();
        let sessions_active = Gauge::default();
        let transactions = Family::<OutcomeLabels, Counter>::default();
        let next_hops = Histogram::new([1.0, 2.0, 3.0, 4.0, 6.0, 10.0, 20.0]);
        let prdr = Family::<ResultLabels, Counter>::default();
        let notifications = Family::<ResultLabels, Counter>::default();
        let duplicate_risk = Counter::default();
        let recipients = Family::<DecisionLabels, Counter>::default();
        let auth = Family::<AuthLabels, Counter>::default();
        let grant_refusals = Family::<ReasonLabels, Counter>::default();
        let token_reviews = Counter::default();
        let downstream_latency = Histogram::new(exponential_buckets(0.0002, 2.0, 16));
        let message_bytes = Counter::default();
        let downstream_connections = Family::<OutcomeLabels, Counter>::default();
        let table_version = Family::<VersionLabels, Gauge>::default();
        let table_reloads = Family::<OutcomeLabels, Gauge<u64, AtomicU64>>::default();
        let table_last_reload = Gauge::<u64, AtomicU64>::default();
        let table_last_reload_ok = Gauge::<u64, AtomicU64>::default();

        let mut registry = Registry::with_prefix("mailroute_relay");
        registry.register("sessions", "SMTP sessions accepted", sessions.clone());
        registry.register(
            "auth",
            "AUTH attempts by mechanism and result",
            auth.clone(),
        );
        registry.register(
            "token_reviews",
            "TokenReview requests made for ServiceAccount tokens not in the cache",
            token_reviews.clone(),
        );
        registry.register(
            "grant_refusals",
            "Commands and messages refused by the client's SendingGrant, by reason",
            grant_refusals.clone(),
        );
        registry.register(
            "sessions_active",
            "SMTP sessions open now",
            sessions_active.clone(),
        );
        registry.register(
            "transactions",
            "Transactions by outcome (after DATA)",
            transactions.clone(),
        );
        registry.register(
            "transaction_next_hops",
            "Next hops per transaction that reached DATA",
            next_hops.clone(),
        );
        registry.register(
            "prdr_transactions",
            "Transactions whose client asked for PRDR, by how they were answered (per_recipient, one)",
            prdr.clone(),
        );
        registry.register(
            "notifications",
            "Delivery status notifications sent for recipients refused after others accepted, by result (sent, deferred, refused)",
            notifications.clone(),
        );
        registry.register(
            "duplicate_risk_recipients",
            "Recipients already accepted by their next hop when the client was told to send again (4xx) or that the message failed (5xx)",
            duplicate_risk.clone(),
        );
        registry.register(
            "recipients",
            "Recipients by decision and reason",
            recipients.clone(),
        );
        registry.register(
            "downstream_latency_seconds",
            "Next hop reply latency per command",
            downstream_latency.clone(),
        );
        registry.register(
            "downstream_connections",
            "Next hop connections by outcome (opened, reused)",
            downstream_connections.clone(),
        );
        registry.register(
            "message_bytes",
            "Message bytes received",
            message_bytes.clone(),
        );
        registry.register(
            "table_info",
            "The routing table in use (value 1)",
            table_version.clone(),
        );
        registry.register(
            "table_reloads",
            "Table loads by outcome",
            table_reloads.clone(),
        );
        registry.register(
            "table_last_reload_timestamp_seconds",
            "Unix time of the last table load attempt",
            table_last_reload.clone(),
        );
        registry.register(
            "table_last_reload_success",
            "1 when the last table load succeeded",
            table_last_reload_ok.clone(),
        );
        Metrics {
            registry,
            sessions,
            sessions_active,
            transactions,
            next_hops,
            prdr,
            notifications,
            duplicate_risk,
            recipients,
            auth,
            grant_refusals,
            token_reviews,
            downstream_latency,
            downstream_connections,
            message_bytes,
            table_version,
            table_reloads,
            table_last_reload,
            table_last_reload_ok,
        }
    }
}

impl Metrics {
    pub fn auth(&self, mechanism: &str, result: &str) {
        self.auth
            .get_or_create(&AuthLabels {
                mechanism: mechanism.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn grant_refusal(&self, reason: &str) {
        self.grant_refusals
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn recipient(&self, decision: &str, reason: &str) {
        self.recipients
            .get_or_create(&DecisionLabels {
                decision: decision.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// The counter of next-hop connections with this outcome.
    pub fn connection(&self, outcome: &str) -> Counter {
        self.downstream_connections
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .clone()
    }

    pub fn transaction(&self, outcome: &str) {
        self.transactions
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn notification(&self, result: &str) {
        self.notifications
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    pub fn prdr(&self, replies: &str) {
        self.prdr
            .get_or_create(&ResultLabels {
                result: replies.into(),
            })
            .inc();
    }

    /// The text exposition, with the table gauges read at scrape time.
    pub fn render(&self, tables: &Tables) -> String {
        self.table_version.clear();
        if let Some(t) = tables.current() {
            self.table_version
                .get_or_create(&VersionLabels {
                    version: t.version.clone(),
                })
                .set(1);
        }
        for (outcome, n) in [
            ("ok", &tables.reloads_ok),
            ("failed", &tables.reloads_failed),
        ] {
            self.table_reloads
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.into(),
                })
                .set(n.load(Ordering::Relaxed));
        }
        self.table_last_reload
            .set(tables.last_reload_unix.load(Ordering::Relaxed));
        self.table_last_reload_ok
            .set(tables.last_reload_ok.load(Ordering::Relaxed));
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
