//! The operator's Prometheus metrics (`/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use routing::ObjectReport;
use std::collections::BTreeSet;
use std::sync::Mutex;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// ok, error, skipped (not the leader).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// api (transient), invalid (permanent), lost_leadership.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ConditionLabels {
    pub namespace: String,
    pub kind: String,
    pub condition: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// configmap_apply, configmap_delete, status, event.
    pub write: String,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ResultLabels, Counter>,
    pub reconcile_duration: Histogram,
    /// From a table's publication to the moment the last Ready relay pod
    /// reported serving it.
    pub propagation_duration: Histogram,
    pub errors: Family<ErrorLabels, Counter>,
    pub writes: Family<WriteLabels, Counter>,
    objects: Family<ConditionLabels, Gauge>,
    pub table_bytes: Family<NamespaceLabels, Gauge>,
    pub table_shards: Family<NamespaceLabels, Gauge>,
    pub leader: Gauge,
    /// The condition label sets set per namespace, so a namespace's
    /// gauges can be zeroed before they are set again.
    seen: Mutex<BTreeSet<ConditionLabels>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("mailroute_operator"),
            reconciles: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            propagation_duration: Histogram::new(exponential_buckets(0.05, 2.0, 14)),
            errors: Family::default(),
            writes: Family::default(),
            objects: Family::default(),
            table_bytes: Family::default(),
            table_shards: Family::default(),
            leader: Gauge::default(),
            seen: Mutex::default(),
        };
        let r = &mut m.registry;
        r.register(
            "reconciles",
            "Namespace reconciles by result",
            m.reconciles.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Time to reconcile one namespace",
            m.reconcile_duration.clone(),
        );
        r.register(
            "propagation_duration_seconds",
            "Time from publishing a table until every Ready relay pod serves it",
            m.propagation_duration.clone(),
        );
        r.register("errors", "Reconcile errors by kind", m.errors.clone());
        r.register(
            "writes",
            "Writes to the API server by type",
            m.writes.clone(),
        );
        r.register(
            "objects",
            "Objects by kind and condition status",
            m.objects.clone(),
        );
        r.register(
            "table_bytes",
            "Bytes of the published table per namespace",
            m.table_bytes.clone(),
        );
        r.register(
            "table_shards",
            "ConfigMaps of the published table per namespace",
            m.table_shards.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the lease",
            m.leader.clone(),
        );
        m
    }
}

impl Metrics {
    pub fn count_error(&self, kind: &str) {
        self.errors
            .get_or_create(&ErrorLabels { kind: kind.into() })
            .inc();
    }

    pub fn count_write(&self, write: &str) {
        self.writes
            .get_or_create(&WriteLabels {
                write: write.into(),
            })
            .inc();
    }

    pub fn count_reconcile(&self, result: &str) {
        self.reconciles
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    /// Sets the objects-by-condition gauges of one namespace.
    pub fn set_objects<'a>(
        &self,
        namespace: &str,
        reports: impl Iterator<Item = &'a ObjectReport>,
    ) {
        let mut seen = self.seen.lock().expect("metrics lock");
        for labels in seen.iter().filter(|l| l.namespace == namespace) {
            self.objects.get_or_create(labels).set(0);
        }
        for r in reports {
            for c in &r.conditions {
                let labels = ConditionLabels {
                    namespace: namespace.into(),
                    kind: r.kind.as_str().into(),
                    condition: c.type_.into(),
                    status: c.status_str().into(),
                };
                self.objects.get_or_create(&labels).inc();
                seen.insert(labels);
            }
        }
    }

    pub fn set_table(&self, namespace: &str, bytes: usize, shards: usize) {
        let labels = NamespaceLabels {
            namespace: namespace.into(),
        };
        self.table_bytes.get_or_create(&labels).set(bytes as i64);
        self.table_shards.get_or_create(&labels).set(shards as i64);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}
