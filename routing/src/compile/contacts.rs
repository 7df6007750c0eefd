//! MailContacts and RecipientPolicies → the table's address entries.
//! Each contact gets its proxy addresses plus the addresses of the single
//! highest-priority policy selecting it; every address goes to its oldest
//! claimant, and only addresses in an accepted domain enter the table.

use super::validate::{self, ValidPolicy};
use super::{age_key, name_of};
use crate::crd::{Kind, RecipientPolicy};
use crate::report::{Problems, Reason, list_names};
use crate::selector;
use crate::table::{AddressRoute, RoutingTable};
use crate::template::Expansion;
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;

/// What a contact ended up with, for its status.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stamped {
    /// Position of the policy in `Objects::policies`.
    pub policy: Option<usize>,
    pub primary: Option<String>,
    /// Its entries in the table: a contact's entries are written together,
    /// so they are this range of `ContactsResult::addresses`.
    pub addresses: std::ops::Range<u32>,
}

pub(crate) struct ContactsResult {
    /// In claim order: contacts oldest first, each contact's addresses in
    /// its own order (proxies, then policy templates). Deterministic.
    pub addresses: Vec<AddressRoute>,
    /// By position in `Objects::contacts`.
    pub stamped: Vec<Stamped>,
    /// `addresses` by key, for the routing table's index.
    pub index: HashTable<u32>,
    pub hasher: DefaultHashBuilder,
}

/// How many contacts a policy message names before "and N more".
const NAMES_IN_MESSAGE: usize = 10;

pub(crate) fn compile(
    objects: &super::Objects,
    accepted: &RoutingTable,
    problems: &mut Problems,
) -> ContactsResult {
    let policies = valid_policies(&objects.policies, accepted, problems);

    let mut order: Vec<usize> = (0..objects.contacts.len()).collect();
    super::age_order(&mut order, |&i| &objects.contacts[i].metadata);

    let mut addresses: Vec<AddressRoute> = Vec::with_capacity(order.len() * 3);
    let mut stamped = vec![Stamped::default(); objects.contacts.len()];
    let mut incomplete: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut chosen: HashMap<Option<&BTreeMap<String, String>>, Option<usize>> = HashMap::new();

    for ci in order {
        let c = &objects.contacts[ci];
        let name = name_of(&c.metadata);
        let valid = match validate::contact(c) {
            Ok(v) => v,
            Err(e) => {
                problems.add(Kind::MailContact, name, Reason::InvalidSpec, e);
                continue;
            }
        };
        let mut candidates = valid.proxies;
        let mut primary = None;
        // Contacts with equal labels get the same policy: ask once per label set.
        let policy = if c.spec.applies_recipient_policies() {
            let labels = c.metadata.labels.as_ref();
            *chosen.entry(labels).or_insert_with(|| {
                policies
                    .iter()
                    .position(|(_, p, _)| selector::matches(p.spec.selector.as_ref(), labels))
            })
        } else {
            None
        };
        if let Some((pi, p, vp)) = policy
            .map(|i| &policies[i])
            .map(|(pi, p, vp)| (*pi, *p, vp))
        {
            stamped[ci].policy = Some(pi);
            let pname = name_of(&p.metadata);
            for (i, t) in vp.templates.iter().enumerate() {
                let template = &p.spec.address_templates[i].template;
                let why = match t.expand(&c.spec) {
                    Expansion::Address(a) => {
                        if i == vp.primary {
                            primary = Some(a.to_string());
                        }
                        candidates.push(a);
                        continue;
                    }
                    Expansion::Missing(fields) => {
                        let f: Vec<&str> = fields.iter().map(|f| f.spec_name()).collect();
                        format!("lacks {}", f.join(", "))
                    }
                    Expansion::Unusable(e) => e,
                };
                problems.add(
                    Kind::MailContact,
                    name,
                    Reason::TemplateIncomplete,
                    format!("RecipientPolicy/{pname} template {template:?} gives no address: contact {why}"),
                );
                incomplete
                    .entry(pname)
                    .or_default()
                    .push(format!("MailContact/{name} ({template:?}: {why})"));
            }
        }
        if primary.is_none() {
            primary = candidates.first().map(|a| a.to_string());
        }
        stamped[ci].primary = primary;

        // An empty target: delivered as addressed (AddressRoute::as_addressed).
        let target: Arc<str> = valid.target.as_ref().map_or("", |t| t.as_str()).into();
        let contact_name: Arc<str> = name.into();
        let first_of_mine = addresses.len();
        for a in candidates {
            let domain_len = a.domain().len();
            let key = a.into_key();
            let domain = &key[key.len() - domain_len..];
            // A contact has a handful of addresses: a linear check beats hashing.
            if addresses[first_of_mine..].iter().any(|r| r.address == key) {
                continue;
            }
            if accepted.space_for(domain).is_none() {
                problems.add(
                    Kind::MailContact,
                    name,
                    Reason::DomainNotAccepted,
                    format!(
                        "{key} is in {domain}, which no AddressSpace accepts: it can never receive"
                    ),
                );
                continue;
            }
            addresses.push(AddressRoute {
                address: key,
                contact: contact_name.clone(),
                target: target.clone(),
                loops: false,
            });
        }
        stamped[ci].addresses = first_of_mine as u32..addresses.len() as u32;
    }

    let (index, hasher) = claim(&mut addresses, &mut stamped, problems);

    for (policy, contacts) in incomplete {
        problems.add(
            Kind::RecipientPolicy,
            policy,
            Reason::TemplateIncomplete,
            format!(
                "{} selected contact(s) get no address from a template: {}",
                contacts.len(),
                list_names(&contacts, NAMES_IN_MESSAGE)
            ),
        );
    }
    ContactsResult {
        addresses,
        stamped,
        index,
        hasher,
    }
}

/// Gives every address to its first claimant (the entries are in claim
/// order: oldest contact first), drops the later claims, and returns the
/// index of the remaining entries by key. A tight pass of its own, so the
/// hash table's cache misses overlap instead of queuing behind other work.
fn claim(
    addresses: &mut Vec<AddressRoute>,
    stamped: &mut [Stamped],
    problems: &mut Problems,
) -> (HashTable<u32>, DefaultHashBuilder) {
    let hasher = DefaultHashBuilder::default();
    let mut index: HashTable<u32> = HashTable::with_capacity(addresses.len());
    let mut lost: Vec<u32> = Vec::new();
    for (i, a) in addresses.iter().enumerate() {
        let hash = hasher.hash_one(a.address.as_str());
        let list = &*addresses;
        match index.find(hash, |&j| list[j as usize].address == a.address) {
            Some(&winner) => {
                lost.push(i as u32);
                problems.add(
                    Kind::MailContact,
                    &a.contact,
                    Reason::DuplicateAddress,
                    format!(
                        "{} is already claimed by the older MailContact/{}; it resolves there",
                        a.address, list[winner as usize].contact
                    ),
                );
            }
            None => {
                index.insert_unique(hash, i as u32, |&j| {
                    hasher.hash_one(list[j as usize].address.as_str())
                });
            }
        }
    }
    if lost.is_empty() {
        return (index, hasher);
    }
    // Compact: `kept_before[i]` is the new position of entry i.
    let mut kept_before = Vec::with_capacity(addresses.len() + 1);
    let mut lost_iter = lost.iter().peekable();
    let mut kept = 0u32;
    for i in 0..addresses.len() as u32 {
        kept_before.push(kept);
        if lost_iter.next_if_eq(&&i).is_none() {
            kept += 1;
        }
    }
    kept_before.push(kept);
    let mut i = 0;
    addresses.retain(|_| {
        let keep = lost.binary_search(&i).is_err();
        i += 1;
        keep
    });
    for slot in index.iter_mut() {
        *slot = kept_before[*slot as usize];
    }
    for s in stamped {
        s.addresses =
            kept_before[s.addresses.start as usize]..kept_before[s.addresses.end as usize];
    }
    (index, hasher)
}

/// Valid policies, highest priority (lowest number) first, then oldest, then name.
fn valid_policies<'a>(
    policies: &'a [RecipientPolicy],
    accepted: &RoutingTable,
    problems: &mut Problems,
) -> Vec<(usize, &'a RecipientPolicy, ValidPolicy)> {
    let mut valid = Vec::new();
    for (pi, p) in policies.iter().enumerate() {
        let name = name_of(&p.metadata);
        match validate::policy(p) {
            Ok(vp) => {
                for (i, t) in vp.templates.iter().enumerate() {
                    if accepted.space_for(t.domain()).is_none() {
                        problems.add(
                            Kind::RecipientPolicy,
                            name,
                            Reason::DomainNotAccepted,
                            format!(
                                "template {:?} makes addresses in {}, which no AddressSpace accepts",
                                p.spec.address_templates[i].template,
                                t.domain()
                            ),
                        );
                    }
                }
                valid.push((pi, p, vp));
            }
            Err(e) => problems.add(Kind::RecipientPolicy, name, Reason::InvalidSpec, e),
        }
    }
    valid.sort_by(|(_, a, _), (_, b, _)| {
        (a.spec.priority, age_key(&a.metadata)).cmp(&(b.spec.priority, age_key(&b.metadata)))
    });
    valid
}
