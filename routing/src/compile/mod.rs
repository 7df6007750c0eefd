//! Objects of one namespace → routing table + a report per object.
//!
//! The pipeline reads like its steps: order the objects (oldest first, then
//! by name) → validate each → claim domains and addresses (oldest wins) →
//! build the table → analyse it (loops, authority) → report.
//! Deterministic: the same objects in any order give the same table bytes
//! and the same reports.

mod contacts;
mod validate;

use crate::analyse;
use crate::crd::{AddressSpace, Kind, MailContact, RecipientPolicy, SendingGrant, SmtpConnector};
use crate::grants::{self, ClusterFacts};
use crate::pattern::DomainPattern;
use crate::report::{ObjectReport, Problems, Reason};
use crate::table::{ConnectorRoute, RoutingTable, SpaceRoute, Table, normalize_self_address};
use hashbrown::HashMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub use validate::parse_quantity;

/// The objects of one namespace, as read from the API or from files.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    pub address_spaces: Vec<AddressSpace>,
    pub policies: Vec<RecipientPolicy>,
    pub contacts: Vec<MailContact>,
    pub connectors: Vec<SmtpConnector>,
    pub grants: Vec<SendingGrant>,
    /// The ServiceAccounts and Secrets grants refer to; `None` (offline
    /// `check`): references are not checked.
    pub cluster: Option<ClusterFacts>,
}

#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// The relay's own names and addresses (`--self`, the relay Service's
    /// DNS names and ClusterIPs), for `ForwardsToSelf`.
    pub self_addresses: Vec<String>,
}

/// The compiled namespace: the indexed table and one report per object,
/// sorted by kind then name.
#[derive(Debug)]
pub struct Compiled {
    pub routing: RoutingTable,
    pub reports: Vec<ObjectReport>,
}

impl Compiled {
    pub fn table(&self) -> &Table {
        self.routing.table()
    }

    pub fn report(&self, kind: Kind, name: &str) -> Option<&ObjectReport> {
        self.reports
            .iter()
            .find(|r| r.kind == kind && r.name == name)
    }
}

/// Oldest first, then by name: who wins a conflict. Objects without a
/// creation time (files not yet applied) count as newest.
pub(crate) fn age_order<'m, T>(items: &mut [T], meta: impl Fn(&T) -> &'m ObjectMeta) {
    items.sort_by(|a, b| age_key(meta(a)).cmp(&age_key(meta(b))));
}

pub(crate) fn age_key(m: &ObjectMeta) -> (bool, Option<&Time>, &str) {
    (
        m.creation_timestamp.is_none(),
        m.creation_timestamp.as_ref(),
        m.name.as_deref().unwrap_or(""),
    )
}

pub(crate) fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

/// Compiles and analyses the objects of one namespace.
pub fn compile(objects: &Objects, options: &CompileOptions) -> Compiled {
    let mut problems = Problems::default();

    let mut spaces: Vec<&AddressSpace> = objects.address_spaces.iter().collect();
    age_order(&mut spaces, |s| &s.metadata);
    let space_routes = claim_spaces(&spaces, &mut problems);

    let mut connectors: Vec<&SmtpConnector> = objects.connectors.iter().collect();
    connectors.sort_by(|a, b| name_of(&a.metadata).cmp(name_of(&b.metadata)));
    let connector_routes: Vec<ConnectorRoute> = connectors
        .iter()
        .filter_map(|c| match validate::connector(c) {
            Ok(route) => route,
            Err(e) => {
                problems.add(
                    Kind::SmtpConnector,
                    name_of(&c.metadata),
                    Reason::InvalidSpec,
                    e,
                );
                None
            }
        })
        .collect();

    // Index what is accepted so far: contacts need it to check their domains.
    let mut routing = RoutingTable::new(Table {
        spaces: space_routes,
        connectors: connector_routes,
        addresses: Vec::new(),
        grants: grants::compile_all(&objects.grants, objects.cluster.as_ref(), &mut problems),
    });

    let contacts::ContactsResult {
        addresses,
        stamped,
        index,
        hasher,
    } = contacts::compile(objects, &routing, &mut problems);
    let mut table = routing.into_table();
    table.addresses = addresses;
    routing = RoutingTable::with_address_index(table, index, hasher);

    let self_names: Vec<String> = options
        .self_addresses
        .iter()
        .map(|s| normalize_self_address(s))
        .collect();
    analyse::analyse(&mut routing, &self_names, &mut problems);

    let reports = report(objects, &routing, stamped, &mut problems);
    Compiled { routing, reports }
}

/// Validates AddressSpaces and gives each domain to its oldest claimant.
fn claim_spaces(spaces: &[&AddressSpace], problems: &mut Problems) -> Vec<SpaceRoute> {
    let mut claimed: HashMap<DomainPattern, &str> = HashMap::new();
    let mut routes = Vec::new();
    for s in spaces {
        let name = name_of(&s.metadata);
        let route = match validate::address_space(s) {
            Ok(r) => r,
            Err(e) => {
                problems.add(Kind::AddressSpace, name, Reason::InvalidSpec, e);
                continue;
            }
        };
        if let Some(winner) = claimed.get(&route.pattern) {
            problems.add(
                Kind::AddressSpace,
                name,
                Reason::DuplicateClaim,
                format!(
                    "{} is already claimed by the older AddressSpace/{winner}; this object is ignored",
                    route.pattern
                ),
            );
            continue;
        }
        claimed.insert(route.pattern.clone(), name);
        routes.push(route);
    }
    routes.sort_by(|a, b| a.pattern.cmp(&b.pattern));
    routes
}

fn report(
    objects: &Objects,
    routing: &RoutingTable,
    mut stamped: Vec<contacts::Stamped>,
    problems: &mut Problems,
) -> Vec<ObjectReport> {
    let table = routing.table();
    let mut reports = Vec::with_capacity(
        objects.address_spaces.len()
            + objects.policies.len()
            + objects.contacts.len()
            + objects.connectors.len()
            + objects.grants.len(),
    );
    // Reports come out sorted by kind, then name: sort positions, not reports.
    fn by_name<T>(items: &[T], meta: impl Fn(&T) -> &ObjectMeta) -> Vec<usize> {
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by(|&a, &b| name_of(meta(&items[a])).cmp(name_of(meta(&items[b]))));
        order
    }
    let mut one = |kind: Kind, meta: &ObjectMeta, ready: String| {
        let name = name_of(meta).to_owned();
        let ps = problems.take(kind, &name);
        ObjectReport::new(kind, name, meta.generation, ps, ready)
    };
    for i in by_name(&objects.address_spaces, |s| &s.metadata) {
        let s = &objects.address_spaces[i];
        let ready = match table.spaces.iter().find(|r| r.name == name_of(&s.metadata)) {
            Some(r) => format!("accepts {} ({})", r.pattern, r.action.describe()),
            None => "not in the routing table".into(),
        };
        reports.push(one(Kind::AddressSpace, &s.metadata, ready));
    }
    let mut stamped_by_policy = vec![0usize; objects.policies.len()];
    for p in stamped.iter().filter_map(|s| s.policy) {
        stamped_by_policy[p] += 1;
    }
    for i in by_name(&objects.policies, |p| &p.metadata) {
        let ready = format!("stamps addresses onto {} contact(s)", stamped_by_policy[i]);
        reports.push(one(
            Kind::RecipientPolicy,
            &objects.policies[i].metadata,
            ready,
        ));
    }
    for i in by_name(&objects.contacts, |c| &c.metadata) {
        let c = &objects.contacts[i];
        let s = std::mem::take(&mut stamped[i]);
        let ready = match (s.addresses.len(), &c.spec.target_address) {
            (0, Some(target)) => format!("no address resolves to it; its target is {target}"),
            (0, None) => "no address resolves to it".to_owned(),
            (n, Some(target)) => format!("{n} address(es) route to {target}"),
            (n, None) => format!("{n} address(es) forwarded as addressed"),
        };
        let mut r = one(Kind::MailContact, &c.metadata, ready);
        r.primary_address = s.primary;
        r.addresses = table.addresses[s.addresses.start as usize..s.addresses.end as usize]
            .iter()
            .map(|a| a.address.clone())
            .collect();
        reports.push(r);
    }
    for i in by_name(&objects.connectors, |c| &c.metadata) {
        let c = &objects.connectors[i];
        let ready = match table
            .connectors
            .iter()
            .find(|r| r.name == name_of(&c.metadata))
        {
            Some(r) => {
                let spaces: Vec<String> = r
                    .address_spaces
                    .iter()
                    .map(|(p, _)| p.to_string())
                    .collect();
                format!(
                    "serves {}; next hop {}",
                    spaces.join(", "),
                    r.hosts_display().join(", ")
                )
            }
            None => "disabled: never selected".into(),
        };
        reports.push(one(Kind::SmtpConnector, &c.metadata, ready));
    }
    for i in by_name(&objects.grants, |g| &g.metadata) {
        let g = &objects.grants[i];
        let ready = match table.grants.iter().find(|r| r.name == name_of(&g.metadata)) {
            Some(r) => r.describe(),
            None => "grants nothing".into(),
        };
        reports.push(one(Kind::SendingGrant, &g.metadata, ready));
    }
    reports
}
