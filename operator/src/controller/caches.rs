//! The operator's view of the cluster: reflector caches of the five kinds
//! (through `DeserializeGuard`, so one unreadable object cannot stop the
//! rest), of the ConfigMaps it manages, and of what SendingGrants refer
//! to (ServiceAccounts; Secrets of type `mailroute.io/htpasswd`). Every replica keeps them warm;
//! a reconcile reads only from here, never from the API server, so a
//! namespace with nothing to change costs no request at all.

use super::health::Health;
use super::publish::{TABLE_LABEL, managed_selector};
use super::status::Current;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use routing::crd::{
    AddressSpace, Kind, MailContact, MailContactStatus, RecipientPolicy, RoutingTable,
    SendingGrant, SmtpConnector,
};
use routing::grants::ClusterFacts;
use routing::propagation::RelayPod;
use routing::{ObjectReport, Objects};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

type Guarded<K> = DeserializeGuard<K>;

/// Changes that matter to the compiler (an object created, deleted, or
/// given a new spec or labels), counted per namespace: a reconcile writing
/// statuses stops when its namespace has a newer one, so the newer table
/// is published first. Status writes do not count.
#[derive(Default)]
pub struct ChangeCounts(std::sync::Mutex<HashMap<String, u64>>);

impl ChangeCounts {
    pub fn of(&self, namespace: &str) -> u64 {
        let counts = self.0.lock().expect("counts lock");
        counts.get(namespace).copied().unwrap_or(0)
    }

    pub fn bump(&self, namespace: &str) {
        let mut counts = self.0.lock().expect("counts lock");
        *counts.entry(namespace.to_owned()).or_insert(0) += 1;
    }
}

/// The caches, one store per kind and watched namespace.
#[derive(Clone, Default)]
pub struct Caches {
    /// Compile-relevant changes per namespace.
    pub changed: Arc<ChangeCounts>,
    pub spaces: Vec<Store<Guarded<AddressSpace>>>,
    pub policies: Vec<Store<Guarded<RecipientPolicy>>>,
    pub contacts: Vec<Store<Guarded<MailContact>>>,
    pub connectors: Vec<Store<Guarded<SmtpConnector>>>,
    pub grants: Vec<Store<Guarded<SendingGrant>>>,
    /// Every ServiceAccount (a grant may name any namespace's); None: the
    /// references of grants are not checked (as offline).
    pub service_accounts: Option<Store<ServiceAccount>>,
    /// Secrets of type `mailroute.io/htpasswd` in the watched namespaces.
    pub password_secrets: Vec<Store<Secret>>,
    pub tables: Vec<Store<ConfigMap>>,
    pub routing_tables: Vec<Store<RoutingTable>>,
    /// The relay pods, when the operator is told where they run
    /// (`--relay-namespace`); None: every relay that reports counts.
    pub relay_pods: Option<Store<Pod>>,
}

/// The Secrets that hold password users: RBAC cannot restrict a watch to
/// them, but the field selector keeps every other Secret out of the cache.
pub const PASSWORD_SECRET_SELECTOR: &str = "type=mailroute.io/htpasswd";

/// The label on a relay pod naming the namespace whose table it serves.
pub const RELAY_TABLE_NAMESPACE_LABEL: &str = "mailroute.io/table-namespace";

/// One namespace as the reconciler sees it.
#[derive(Default)]
pub struct Snapshot {
    pub objects: Objects,
    /// Objects that could not be read, as reports (Ready False, InvalidSpec).
    pub unreadable: Vec<ObjectReport>,
    /// Each object's generation and status now, by kind and name.
    pub current: HashMap<(Kind, String), Current>,
}

impl Snapshot {
    pub fn is_empty(&self) -> bool {
        let o = &self.objects;
        self.unreadable.is_empty()
            && o.address_spaces.is_empty()
            && o.policies.is_empty()
            && o.contacts.is_empty()
            && o.connectors.is_empty()
            && o.grants.is_empty()
    }
}

/// How each kind's status reads as the common status shape.
trait HasStatus {
    fn current_status(&self) -> Option<MailContactStatus>;
}

macro_rules! plain_status {
    ($($t:ty),*) => {$(
        impl HasStatus for $t {
            fn current_status(&self) -> Option<MailContactStatus> {
                self.status.as_ref().map(|s| MailContactStatus {
                    observed_generation: s.observed_generation,
                    conditions: s.conditions.clone(),
                    ..MailContactStatus::default()
                })
            }
        }
    )*};
}
plain_status!(AddressSpace, RecipientPolicy, SmtpConnector, SendingGrant);

impl HasStatus for MailContact {
    fn current_status(&self) -> Option<MailContactStatus> {
        self.status.clone()
    }
}

impl Caches {
    pub fn snapshot(&self, namespace: &str) -> Snapshot {
        let mut s = Snapshot::default();
        s.objects.address_spaces = collect(&self.spaces, Kind::AddressSpace, namespace, &mut s);
        s.objects.policies = collect(&self.policies, Kind::RecipientPolicy, namespace, &mut s);
        s.objects.contacts = collect(&self.contacts, Kind::MailContact, namespace, &mut s);
        s.objects.connectors = collect(&self.connectors, Kind::SmtpConnector, namespace, &mut s);
        s.objects.grants = collect(&self.grants, Kind::SendingGrant, namespace, &mut s);
        s.objects.cluster = self.cluster_facts(namespace);
        s
    }

    /// What the namespace's grants may refer to, as the caches have it.
    fn cluster_facts(&self, namespace: &str) -> Option<ClusterFacts> {
        let accounts = self.service_accounts.as_ref()?;
        let service_accounts = accounts
            .state()
            .iter()
            .map(|sa| (sa.namespace().unwrap_or_default(), sa.name_any()))
            .collect();
        let password_secrets = self
            .password_secrets
            .iter()
            .flat_map(Store::state)
            .filter(|s| s.namespace().as_deref() == Some(namespace))
            .map(|s| {
                let text = s
                    .data
                    .as_ref()
                    .and_then(|d| d.get(routing::grants::password::HTPASSWD_KEY))
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned());
                (s.name_any(), text)
            })
            .collect();
        Some(ClusterFacts {
            service_accounts,
            password_secrets,
        })
    }

    /// The namespaces that hold a SendingGrant (a ServiceAccount's change
    /// matters to them all).
    pub fn grant_namespaces(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .grants
            .iter()
            .flat_map(Store::state)
            .filter_map(|g| g.namespace())
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// The ConfigMaps of `table` in `namespace` as the cache has them.
    pub fn table_configmaps(&self, namespace: &str, table: &str) -> Vec<Arc<ConfigMap>> {
        self.tables
            .iter()
            .flat_map(Store::state)
            .filter(|c| c.namespace().as_deref() == Some(namespace))
            .filter(|c| c.labels().get(TABLE_LABEL).map(String::as_str) == Some(table))
            .collect()
    }

    /// The namespace's RoutingTable as the cache has it.
    pub fn routing_table(&self, namespace: &str, name: &str) -> Option<RoutingTable> {
        self.routing_tables
            .iter()
            .flat_map(Store::state)
            .find(|t| t.namespace().as_deref() == Some(namespace) && t.name_any() == name)
            .map(|t| t.as_ref().clone())
    }

    /// The relay pods that serve `namespace`'s table, Ready or not.
    pub fn relay_pods(&self, namespace: &str) -> Option<Vec<RelayPod>> {
        let store = self.relay_pods.as_ref()?;
        let mut pods: Vec<RelayPod> = store
            .state()
            .iter()
            .filter(|p| relay_pod_table(p).as_deref() == Some(namespace))
            .map(|p| RelayPod {
                namespace: p.namespace().unwrap_or_default(),
                name: p.name_any(),
                ready: is_ready(p),
                ready_since: ready_since(p),
            })
            .collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Some(pods)
    }

    /// Every namespace that holds any mailroute object or managed ConfigMap.
    pub fn namespaces(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        fn add<K: Resource + Clone>(all: &mut Vec<String>, stores: &[Store<K>])
        where
            K::DynamicType: Eq + std::hash::Hash + Clone,
        {
            all.extend(
                stores
                    .iter()
                    .flat_map(Store::state)
                    .filter_map(|o| o.namespace()),
            );
        }
        add(&mut all, &self.spaces);
        add(&mut all, &self.policies);
        add(&mut all, &self.contacts);
        add(&mut all, &self.connectors);
        add(&mut all, &self.grants);
        add(&mut all, &self.tables);
        all.sort();
        all.dedup();
        all
    }

    /// Resolves once every store has its initial list.
    pub async fn wait_until_ready(&self) {
        ready(&self.spaces).await;
        ready(&self.policies).await;
        ready(&self.contacts).await;
        ready(&self.connectors).await;
        ready(&self.grants).await;
        ready(&self.password_secrets).await;
        if let Some(accounts) = &self.service_accounts {
            let _ = accounts.wait_until_ready().await;
        }
        ready(&self.tables).await;
        ready(&self.routing_tables).await;
        if let Some(pods) = &self.relay_pods {
            let _ = pods.wait_until_ready().await;
        }
    }
}

fn relay_pod_table(pod: &Pod) -> Option<String> {
    pod.labels().get(RELAY_TABLE_NAMESPACE_LABEL).cloned()
}

/// Ready, and not on its way out.
fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// When the pod's Ready condition last changed (to True, if it is Ready).
fn ready_since(pod: &Pod) -> Option<k8s_openapi::jiff::Timestamp> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    ready.last_transition_time.as_ref().map(|t| t.0)
}

async fn ready<K: Resource + Clone>(stores: &[Store<K>])
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    for s in stores {
        // Only fails when the writer is gone, i.e. the watch ended: nothing to wait for.
        let _ = s.wait_until_ready().await;
    }
}

fn collect<K>(stores: &[Store<Guarded<K>>], kind: Kind, namespace: &str, s: &mut Snapshot) -> Vec<K>
where
    K: Resource<DynamicType = ()> + HasStatus + Clone,
{
    let mut objects = Vec::new();
    for guarded in stores.iter().flat_map(Store::state) {
        if guarded.namespace().as_deref() != Some(namespace) {
            continue;
        }
        let name = guarded.name_any();
        let generation = guarded.meta().generation;
        let uid = guarded.meta().uid.clone();
        match &guarded.0 {
            Ok(object) => {
                let current = Current {
                    generation,
                    uid,
                    status: object.current_status(),
                };
                s.current.insert((kind, name), current);
                objects.push(object.clone());
            }
            Err(invalid) => {
                // Its status cannot be read either: compare against nothing,
                // which writes it once per reconcile at most until it is fixed.
                s.current.insert(
                    (kind, name.clone()),
                    Current {
                        generation,
                        uid,
                        status: None,
                    },
                );
                s.unreadable.push(ObjectReport::unreadable(
                    kind,
                    name,
                    generation,
                    &invalid.error,
                ));
            }
        }
    }
    objects
}

/// Where to watch: every namespace, or the listed ones.
fn apis<K>(client: &Client, namespaces: &[String]) -> Vec<Api<K>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    }
}

/// What the compiler reads of each object besides its spec: a change to
/// any of these (or the generation, which counts spec changes) matters.
#[derive(Default)]
struct Seen(HashMap<(String, String), (Option<i64>, u64)>);

impl Seen {
    /// Whether `o` differs from what was last seen of it in what the
    /// compiler reads; remembers it (or forgets it, when `deleted`).
    fn relevant<K: Resource>(&mut self, o: &K, deleted: bool) -> bool {
        let key = (o.namespace().unwrap_or_default(), o.name_any());
        if deleted {
            return self.0.remove(&key).is_some();
        }
        let labels = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            o.meta().labels.hash(&mut h);
            o.meta().deletion_timestamp.is_some().hash(&mut h);
            h.finish()
        };
        let now = (o.meta().generation, labels);
        self.0.insert(key, now) != Some(now)
    }
}

/// A change the reconciler must look at: the namespace it happened in.
pub type Changes = std::pin::Pin<Box<dyn Stream<Item = String> + Send>>;

/// One reflector per Api; yields the namespace of every changed object.
fn reflect<K>(
    apis: Vec<Api<K>>,
    config: &watcher::Config,
    health: &Arc<Health>,
    key: fn(&K) -> Option<String>,
    relevance: Option<&Arc<ChangeCounts>>,
) -> (Vec<Store<K>>, Vec<Changes>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let mut stores = Vec::new();
    let mut changes: Vec<Changes> = Vec::new();
    for api in apis {
        let (store, writer): (Store<K>, Writer<K>) = reflector::store();
        let what = format!("watch {}", K::kind(&()));
        let health = health.clone();
        let mut seen = relevance.map(|counts| (counts.clone(), Seen::default()));
        let stream = reflector::reflector(
            writer,
            watcher(api, config.clone()).default_backoff().modify(|o| {
                // Neither is ever read; at 100k contacts they would be
                // most of the cache.
                o.meta_mut().managed_fields = None;
                if let Some(a) = o.meta_mut().annotations.as_mut() {
                    a.remove("kubectl.kubernetes.io/last-applied-configuration");
                }
            }),
        )
        .filter_map(move |event| {
            let changed = match event {
                Ok(event) => {
                    health.clear(&what);
                    match (event, seen.as_mut()) {
                        (watcher::Event::InitApply(o), Some((_, seen))) => {
                            seen.relevant(&o, false);
                            key(&o)
                        }
                        (watcher::Event::Apply(o), Some((counts, seen))) => {
                            // A status write changes neither: no compile.
                            if seen.relevant(&o, false) {
                                let ns = key(&o);
                                if let Some(ns) = &ns {
                                    counts.bump(ns);
                                }
                                ns
                            } else {
                                None
                            }
                        }
                        (watcher::Event::Delete(o), Some((counts, seen))) => {
                            seen.relevant(&o, true);
                            let ns = key(&o);
                            if let Some(ns) = &ns {
                                counts.bump(ns);
                            }
                            ns
                        }
                        (
                            watcher::Event::Apply(o)
                            | watcher::Event::Delete(o)
                            | watcher::Event::InitApply(o),
                            None,
                        ) => key(&o),
                        _ => None,
                    }
                }
                Err(e) => {
                    tracing::warn!(what = %what, error = %e, "watch failed; retrying with backoff");
                    health.set(&what, e);
                    None
                }
            };
            std::future::ready(changed)
        });
        stores.push(store);
        changes.push(Box::pin(stream));
    }
    (stores, changes)
}

/// What the caches report changed: namespaces to compile, and namespaces
/// whose RoutingTable may need writing (relay reports, relay pods).
pub struct Watched {
    pub compile: Vec<Changes>,
    pub propagation: Vec<Changes>,
}

fn namespace_of<K: Resource>(o: &K) -> Option<String> {
    o.namespace()
}

/// Starts watching everything the operator needs; a failing watch is a
/// problem in `health` until it works again. `relay_namespace`: where the
/// relay pods run (their label says whose table they serve).
pub fn watch(
    client: &Client,
    namespaces: &[String],
    relay_namespace: Option<&str>,
    health: Arc<Health>,
) -> (Caches, Watched) {
    let all = watcher::Config::default();
    let managed = watcher::Config::default().labels(&managed_selector());
    let changed = Arc::new(ChangeCounts::default());
    let c = Some(&changed);
    let (spaces, c1) = reflect(apis(client, namespaces), &all, &health, namespace_of, c);
    let (policies, c2) = reflect(apis(client, namespaces), &all, &health, namespace_of, c);
    let (contacts, c3) = reflect(apis(client, namespaces), &all, &health, namespace_of, c);
    let (connectors, c4) = reflect(apis(client, namespaces), &all, &health, namespace_of, c);
    let (grants, c6) = reflect(apis(client, namespaces), &all, &health, namespace_of, c);
    let htpasswd = watcher::Config::default().fields(PASSWORD_SECRET_SELECTOR);
    let (password_secrets, c7) = reflect(
        apis(client, namespaces),
        &htpasswd,
        &health,
        namespace_of,
        None,
    );
    // A ServiceAccount created or deleted anywhere: every namespace with
    // grants is compiled again (its references may have changed).
    let (accounts, sa_changes) = reflect(
        vec![Api::<ServiceAccount>::all(client.clone())],
        &all,
        &health,
        namespace_of,
        None,
    );
    let grant_stores = grants.clone();
    let c8: Vec<Changes> = sa_changes
        .into_iter()
        .map(|changes| {
            let stores = grant_stores.clone();
            let namespaces = changes.flat_map(move |_| {
                let caches = Caches {
                    grants: stores.clone(),
                    ..Caches::default()
                };
                futures::stream::iter(caches.grant_namespaces())
            });
            Box::pin(namespaces) as Changes
        })
        .collect();
    // The table's ConfigMaps: any change (someone else's edit) is repaired.
    let (tables, c5) = reflect(
        apis(client, namespaces),
        &managed,
        &health,
        namespace_of,
        None,
    );
    let (routing_tables, p1) = reflect(
        apis(client, namespaces),
        &managed,
        &health,
        namespace_of,
        None,
    );
    let (relay_pods, p2) = match relay_namespace {
        Some(ns) => {
            let relays = watcher::Config::default().labels(RELAY_TABLE_NAMESPACE_LABEL);
            let api: Api<Pod> = Api::namespaced(client.clone(), ns);
            let (stores, changes) = reflect(vec![api], &relays, &health, relay_pod_table, None);
            (stores.into_iter().next(), changes)
        }
        None => (None, Vec::new()),
    };
    let caches = Caches {
        changed,
        spaces,
        policies,
        contacts,
        connectors,
        grants,
        service_accounts: accounts.into_iter().next(),
        password_secrets,
        tables,
        routing_tables,
        relay_pods,
    };
    let watched = Watched {
        compile: [c1, c2, c3, c4, c5, c6, c7, c8]
            .into_iter()
            .flatten()
            .collect(),
        propagation: [p1, p2].into_iter().flatten().collect(),
    };
    (caches, watched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use routing::fixtures::contact;

    #[test]
    fn a_status_write_is_not_a_change_the_compiler_cares_about() {
        let mut seen = Seen::default();
        let mut ann = contact("ann", &["ann@example.com"], "ann@mbx.example.com");
        ann.metadata.namespace = Some("mail".into());
        ann.metadata.generation = Some(1);
        assert!(seen.relevant(&ann, false), "new");
        ann.status = Some(MailContactStatus::default());
        assert!(!seen.relevant(&ann, false), "status only");
        ann.metadata.labels = Some([("team".to_owned(), "a".to_owned())].into());
        assert!(seen.relevant(&ann, false), "labels select policies");
        ann.metadata.generation = Some(2);
        assert!(seen.relevant(&ann, false), "spec");
        assert!(!seen.relevant(&ann, false), "the same again");
        assert!(seen.relevant(&ann, true), "deleted");
        assert!(!seen.relevant(&ann, true), "deleted twice");
    }
}
