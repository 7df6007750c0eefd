//! MailContacts and RecipientPolicies → the table's address entries.
//! Each contact gets its proxy addresses plus the addresses of the single
//! highest-priority policy selecting it; every address goes to its oldest
//! claimant, and only addresses in an accepted domain enter the table.

use super::validate::{self, ValidPolicy};
use super::{age_key, name_of};
use crate::crd::{Kind, MailContact, RecipientPolicy};
use crate::report::{Problems, Reason, list_names};
use crate::selector;
use crate::table::{AddressRoute, RoutingTable};
use crate::template::Expansion;
use hashbrown::HashMap;
use hashbrown::hash_map::Entry;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a contact ended up with, for its status.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stamped {
    pub policy: Option<String>,
    pub primary: Option<String>,
    /// Its addresses that are in the table (lookup keys).
    pub addresses: Vec<String>,
}

pub(crate) struct ContactsResult {
    /// Sorted by key.
    pub addresses: Vec<AddressRoute>,
    /// By contact name.
    pub stamped: HashMap<String, Stamped>,
}

/// How many contacts a policy message names before "and N more".
const NAMES_IN_MESSAGE: usize = 10;

pub(crate) fn compile(
    objects: &super::Objects,
    accepted: &RoutingTable,
    problems: &mut Problems,
) -> ContactsResult {
    let policies = valid_policies(&objects.policies, accepted, problems);

    let mut contacts: Vec<&MailContact> = objects.contacts.iter().collect();
    super::age_order(&mut contacts, |c| &c.metadata);

    let mut claimed: HashMap<String, &str> = HashMap::with_capacity(contacts.len() * 2);
    let mut addresses = Vec::with_capacity(contacts.len() * 2);
    let mut stamped = HashMap::with_capacity(contacts.len());
    let mut incomplete: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut chosen: HashMap<Option<&BTreeMap<String, String>>, Option<usize>> = HashMap::new();

    for c in contacts {
        let name = name_of(&c.metadata);
        let valid = match validate::contact(c) {
            Ok(v) => v,
            Err(e) => {
                problems.add(Kind::MailContact, name, Reason::InvalidSpec, e);
                continue;
            }
        };
        let target: Arc<str> = valid.target.as_str().into();
        let contact_name: Arc<str> = name.into();
        let mut candidates = valid.proxies;
        let mut primary = None;
        // Contacts with equal labels get the same policy: ask once per label set.
        let policy = if c.spec.applies_recipient_policies() {
            let labels = c.metadata.labels.as_ref();
            *chosen.entry(labels).or_insert_with(|| {
                policies
                    .iter()
                    .position(|(p, _)| selector::matches(p.spec.selector.as_ref(), labels))
            })
        } else {
            None
        };
        let policy = policy.map(|i| &policies[i]);
        if let Some((p, vp)) = policy {
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

        let mut mine: Vec<String> = Vec::new();
        let mut seen: Vec<String> = Vec::with_capacity(candidates.len());
        for a in candidates {
            let key = a.key();
            // A contact has a handful of addresses: a linear check beats hashing.
            if seen.contains(&key) {
                continue;
            }
            seen.push(key.clone());
            if accepted.space_for(a.domain()).is_none() {
                problems.add(
                    Kind::MailContact,
                    name,
                    Reason::DomainNotAccepted,
                    format!(
                        "{a} is in {}, which no AddressSpace accepts: it can never receive",
                        a.domain()
                    ),
                );
                continue;
            }
            match claimed.entry(key) {
                Entry::Occupied(o) => problems.add(
                    Kind::MailContact,
                    name,
                    Reason::DuplicateAddress,
                    format!(
                        "{} is already claimed by the older MailContact/{}; it resolves there",
                        o.key(),
                        o.get()
                    ),
                ),
                Entry::Vacant(v) => {
                    mine.push(v.key().clone());
                    addresses.push(AddressRoute {
                        address: v.key().clone(),
                        contact: contact_name.clone(),
                        target: target.clone(),
                        loops: false,
                    });
                    v.insert(name);
                }
            }
        }
        stamped.insert(
            name.to_owned(),
            Stamped {
                policy: policy.map(|(p, _)| name_of(&p.metadata).to_owned()),
                primary,
                addresses: mine,
            },
        );
    }

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
    addresses.sort_unstable_by(|a, b| a.address.cmp(&b.address));
    ContactsResult { addresses, stamped }
}

/// Valid policies, highest priority (lowest number) first, then oldest, then name.
fn valid_policies<'a>(
    policies: &'a [RecipientPolicy],
    accepted: &RoutingTable,
    problems: &mut Problems,
) -> Vec<(&'a RecipientPolicy, ValidPolicy)> {
    let mut valid = Vec::new();
    for p in policies {
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
                valid.push((p, vp));
            }
            Err(e) => problems.add(Kind::RecipientPolicy, name, Reason::InvalidSpec, e),
        }
    }
    valid.sort_by(|(a, _), (b, _)| {
        (a.spec.priority, age_key(&a.metadata)).cmp(&(b.spec.priority, age_key(&b.metadata)))
    });
    valid
}
