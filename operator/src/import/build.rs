//! The objects a relay's routing makes, whichever MTA it was read from:
//! accepted domains (exact, or with their subdomains), aliases, a
//! recipient list and next hops, in Postfix's terms (the sendmail importer
//! translates into them). Shared by [`super::postfix`] and
//! [`super::sendmail`].

use super::source::list;
use super::{Entry, Imported, Names, Origin, Skipped, SpaceKind};
use routing::crd::{AddressSpaceType, ConnectorAddressSpace, SmtpConnectorSpec};
use std::collections::{BTreeMap, BTreeSet};

/// A relay's routing in Postfix's terms, whichever MTA it was read from
/// (the sendmail importer fills it too).
pub struct Routing {
    /// Domains accepted exactly, every recipient listed (Authoritative).
    pub virtual_domains: Vec<(String, Origin)>,
    /// Domains accepted with their subdomains.
    pub relay_domains: Vec<(String, Origin)>,
    /// `user@d target`, `@d @other`.
    pub aliases: Vec<Entry>,
    pub recipients: Vec<Entry>,
    pub recipients_set: bool,
    /// `d`, `.d`, `*` → `smtp:next-hop`.
    pub transports: Vec<Entry>,
    pub relayhost: Option<(String, Origin)>,
    pub default_transport: Option<(String, Origin)>,
}

pub fn build(r: Routing, out: Imported, namespace: Option<&str>) -> Imported {
    let mut b = Builder {
        ns: namespace,
        out,
        space_names: Names::default(),
        contact_names: Names::default(),
        connector_names: Names::default(),
    };
    let accepted = b.spaces(&r.virtual_domains, &r.relay_domains);
    let alias_domains = b.contacts(&r.aliases, &accepted);
    b.gateway_recipients(&r.recipients, &accepted);
    if r.recipients_set {
        b.delivered_targets(&r.recipients, &accepted);
    }
    b.space_objects(&accepted, &alias_domains, r.recipients_set, &r.recipients);
    b.connectors(&r.transports, r.relayhost, r.default_transport);
    let mut out = b.out;
    out.skipped.sort();
    out
}

/// Which domains Postfix accepts, and as what.
struct Accepted {
    /// Domain → (virtual alias domain?, origin).
    domains: BTreeMap<String, (bool, Origin)>,
}

impl Accepted {
    /// Whether Postfix accepts mail for `domain` at all (a relay domain's
    /// subdomains included).
    fn accepts(&self, domain: &str) -> bool {
        self.class(domain).is_some()
    }

    /// `Some(true)` virtual alias domain, `Some(false)` relay domain (or a
    /// subdomain of one).
    fn class(&self, domain: &str) -> Option<bool> {
        if let Some((virt, _)) = self.domains.get(domain) {
            return Some(*virt);
        }
        let mut d = domain;
        while let Some((_, parent)) = d.split_once('.') {
            if let Some((false, _)) = self.domains.get(parent) {
                return Some(false);
            }
            d = parent;
        }
        None
    }
}

struct Builder<'a> {
    ns: Option<&'a str>,
    out: Imported,
    space_names: Names,
    contact_names: Names,
    connector_names: Names,
}

impl Builder<'_> {
    fn skip(&mut self, origin: &Origin, entry: String, why: impl Into<String>) {
        self.out.skipped.push(Skipped {
            origin: origin.clone(),
            entry,
            why: why.into(),
        });
    }

    fn spaces(&mut self, virt: &[(String, Origin)], relay: &[(String, Origin)]) -> Accepted {
        let mut domains = BTreeMap::new();
        // A virtual alias domain listed as a relay domain too is Postfix's
        // configuration error; the virtual class wins there.
        for (d, o) in virt {
            domains.entry(d.clone()).or_insert((true, o.clone()));
        }
        for (d, o) in relay {
            domains.entry(d.clone()).or_insert((false, o.clone()));
        }
        Accepted { domains }
    }

    /// virtual_alias_maps → contacts; returns the alias domains found
    /// (`@d @other`: d → other).
    fn contacts(
        &mut self,
        aliases: &[Entry],
        accepted: &Accepted,
    ) -> BTreeMap<String, (String, Origin)> {
        let mut alias_domains = BTreeMap::new();
        // Target → (keys, origin of the first).
        let mut by_target: BTreeMap<Option<String>, Vec<(String, Origin)>> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for e in aliases {
            let entry = format!("{} {}", e.key, e.value);
            if !e.key.contains('@') {
                if !e.key.contains('.') {
                    self.skip(&e.origin, entry, "a bare local part: Postfix applies it to its local domains (mydestination), which mailroute does not deliver to");
                }
                // Otherwise a virtual alias domain's own entry.
                continue;
            }
            if !seen.insert(e.key.clone()) {
                self.skip(&e.origin, entry, "a duplicate key: the first one counts");
                continue;
            }
            let (local, domain) = e.key.rsplit_once('@').expect("has @");
            if !accepted.accepts(domain) {
                self.skip(&e.origin, entry, format!("{domain} is neither a relay domain nor a virtual alias domain here: Postfix applies it only to mail it relays for its own clients"));
                continue;
            }
            let targets = list(&e.value);
            if local.is_empty() {
                match targets.as_slice() {
                    [t] if t.starts_with('@') && t.len() > 1 => {
                        alias_domains.insert(
                            domain.to_owned(),
                            (t[1..].to_lowercase(), e.origin.clone()),
                        );
                    }
                    _ => self.skip(&e.origin, entry, "a catch-all to an address: a MailContact has its own addresses, not a whole domain's"),
                }
                continue;
            }
            match targets.as_slice() {
                [t] if t.eq_ignore_ascii_case(&e.key) && accepted.class(domain) == Some(true) => {
                    self.skip(&e.origin, entry, "an address of a virtual alias domain that aliases to itself: Postfix accepts it, then bounces it (User unknown); mailroute refuses it at RCPT");
                }
                [t] if t.eq_ignore_ascii_case(&e.key) => {
                    by_target
                        .entry(None)
                        .or_default()
                        .push((e.key.clone(), e.origin.clone()));
                }
                [t] if is_address(t) => {
                    by_target
                        .entry(Some(t.clone()))
                        .or_default()
                        .push((e.key.clone(), e.origin.clone()));
                }
                [t] => self.skip(
                    &e.origin,
                    entry,
                    format!(
                        "{t} is not an address (a pipe, file or :include: list is not a route)"
                    ),
                ),
                many => self.skip(
                    &e.origin,
                    entry,
                    format!("{} targets: a MailContact has one", many.len()),
                ),
            }
        }
        for (target, keys) in by_target {
            match target {
                // Each self-referencing key: a recipient of its own.
                None => {
                    for (key, origin) in keys {
                        let name = self.contact_names.claim(&key);
                        let c = super::contact(name, self.ns, &origin, vec![key], None);
                        self.out.contacts.push(c);
                    }
                }
                Some(target) => {
                    let origin = keys[0].1.clone();
                    let name = self.contact_names.claim(&keys[0].0);
                    let addresses = keys.into_iter().map(|(k, _)| k).collect();
                    let c = super::contact(name, self.ns, &origin, addresses, Some(target));
                    self.out.contacts.push(c);
                }
            }
        }
        alias_domains
    }

    /// relay_recipient_maps: listed recipients not already aliased become
    /// contacts forwarded as addressed.
    fn gateway_recipients(&mut self, recipients: &[Entry], accepted: &Accepted) {
        let aliased: BTreeSet<String> = self
            .out
            .contacts
            .iter()
            .flat_map(|c| c.spec.proxy_addresses.iter().cloned())
            .collect();
        let mut seen = BTreeSet::new();
        for e in recipients {
            let entry = format!("{} {}", e.key, e.value);
            let Some((local, domain)) = e.key.rsplit_once('@') else {
                self.skip(
                    &e.origin,
                    entry,
                    "a bare local part: relay_recipient_maps keys are addresses or @domain",
                );
                continue;
            };
            if local.is_empty() || aliased.contains(&e.key) || !seen.insert(e.key.clone()) {
                continue; // @domain: read by space_objects; aliased: already a contact
            }
            if accepted.class(domain) != Some(false) {
                self.skip(
                    &e.origin,
                    entry,
                    format!("{domain} is not a relay domain here"),
                );
                continue;
            }
            let name = self.contact_names.claim(&e.key);
            let c = super::contact(name, self.ns, &e.origin, vec![e.key.clone()], None);
            self.out.contacts.push(c);
        }
    }

    /// Postfix checks only the recipient a client gives; an alias target is
    /// delivered without a check. In an Authoritative space mailroute
    /// checks it again, so an alias target in a relay domain with a
    /// recipient map, that no contact has, becomes a contact forwarded as
    /// addressed (which also accepts it when a client gives it directly,
    /// where Postfix would refuse it: docs/cli.md).
    fn delivered_targets(&mut self, recipients: &[Entry], accepted: &Accepted) {
        let catch_all: BTreeSet<&str> = recipients
            .iter()
            .filter_map(|e| e.key.strip_prefix('@'))
            .collect();
        let known: BTreeSet<String> = self
            .out
            .contacts
            .iter()
            .flat_map(|c| c.spec.proxy_addresses.iter().cloned())
            .collect();
        let mut targets: BTreeMap<String, Origin> = BTreeMap::new();
        for c in &self.out.contacts {
            let Some(t) = &c.spec.target_address else {
                continue;
            };
            let key = t.to_lowercase();
            let Some((_, domain)) = key.rsplit_once('@') else {
                continue;
            };
            if accepted.class(domain) == Some(false)
                && !catch_all.contains(domain)
                && !known.contains(&key)
            {
                let origin = Origin {
                    file: c
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(super::FROM_ANNOTATION))
                        .cloned()
                        .unwrap_or_default(),
                    line: 0,
                };
                targets.entry(key).or_insert(origin);
            }
        }
        for (t, origin) in targets {
            let name = self.contact_names.claim(&t);
            let origin = Origin {
                file: format!("target of {}", origin.file),
                line: 0,
            };
            let c = super::contact(name, self.ns, &origin, vec![t], None);
            self.out.contacts.push(c);
        }
    }

    fn space_objects(
        &mut self,
        accepted: &Accepted,
        alias_domains: &BTreeMap<String, (String, Origin)>,
        recipients_set: bool,
        recipients: &[Entry],
    ) {
        let catch_all: BTreeSet<&str> = recipients
            .iter()
            .filter_map(|e| e.key.strip_prefix('@'))
            .collect();
        let contact_domains: BTreeSet<String> = self
            .out
            .contacts
            .iter()
            .flat_map(|c| c.spec.proxy_addresses.iter())
            .filter_map(|a| a.rsplit_once('@').map(|(_, d)| d.to_owned()))
            .collect();
        let relay_type = |d: &str, has_contacts: bool| {
            if recipients_set && !catch_all.contains(d) {
                AddressSpaceType::Authoritative
            } else if has_contacts {
                AddressSpaceType::InternalRelay
            } else {
                AddressSpaceType::ExternalRelay
            }
        };
        for (d, (virt, origin)) in &accepted.domains {
            let kind = match alias_domains.get(d) {
                Some((to, _)) => SpaceKind::RewriteTo(to.clone()),
                None if *virt => SpaceKind::Type(AddressSpaceType::Authoritative),
                None => SpaceKind::Type(relay_type(d, contact_domains.contains(d))),
            };
            let name = self.space_names.claim(d);
            self.out
                .spaces
                .push(super::space(name, self.ns, origin, d, kind));
            if !*virt {
                // Postfix's relay_domains match subdomains too.
                let wildcard = format!("*.{d}");
                let below = contact_domains
                    .iter()
                    .any(|c| c.ends_with(&format!(".{d}")));
                let kind = SpaceKind::Type(relay_type(&wildcard, below));
                let name = self.space_names.claim(&format!("any.{d}"));
                self.out
                    .spaces
                    .push(super::space(name, self.ns, origin, &wildcard, kind));
            }
        }
    }

    fn connectors(
        &mut self,
        transports: &[Entry],
        relayhost: Option<(String, Origin)>,
        default_transport: Option<(String, Origin)>,
    ) {
        // Next hop → (patterns, origin of the first).
        let mut by_hop: BTreeMap<Vec<String>, (Vec<String>, Origin)> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for e in transports {
            let entry = format!("{} {}", e.key, e.value);
            if e.key.contains('@') {
                self.skip(&e.origin, entry, "a per-recipient transport: route that recipient with a MailContact whose target is in a domain a connector serves");
                continue;
            }
            let pattern = match e.key.as_str() {
                "*" => "*".to_owned(),
                k if k.starts_with('.') => format!("*{k}"),
                k => k.to_owned(),
            };
            if !seen.insert(pattern.clone()) {
                self.skip(&e.origin, entry, "a duplicate key: the first one counts");
                continue;
            }
            match next_hop(&e.value) {
                Ok(hosts) => {
                    let slot = by_hop
                        .entry(hosts)
                        .or_insert_with(|| (Vec::new(), e.origin.clone()));
                    slot.0.push(pattern);
                }
                Err(why) => self.skip(&e.origin, entry, why),
            }
        }
        if !seen.contains("*") {
            let fallback = match (relayhost, default_transport) {
                (Some((v, o)), _) => Some((list(&v), o)),
                (None, Some((v, o))) => match next_hop(&v) {
                    Ok(hosts) => Some((hosts, o)),
                    Err(why) => {
                        self.skip(
                            &o,
                            format!("default_transport = {v}"),
                            format!("{why}; no `*` connector is written"),
                        );
                        None
                    }
                },
                (None, None) => Some((
                    Vec::new(),
                    Origin {
                        file: "(Postfix default)".into(),
                        line: 0,
                    },
                )),
            };
            if let Some((hosts, origin)) = fallback {
                by_hop
                    .entry(hosts)
                    .or_insert_with(|| (Vec::new(), origin))
                    .0
                    .push("*".into());
            }
        }
        for (hosts, (patterns, origin)) in by_hop {
            let raw = if hosts.is_empty() {
                "mx".to_owned()
            } else {
                hosts.join(" ")
            };
            let name = self.connector_names.claim(&raw);
            let spec = SmtpConnectorSpec {
                address_spaces: patterns
                    .into_iter()
                    .map(|domain| ConnectorAddressSpace { domain, cost: None })
                    .collect(),
                smart_hosts: hosts,
                tls: None,
                auth_secret_ref: None,
                max_message_size: None,
                enabled: None,
            };
            self.out
                .connectors
                .push(super::connector(name, self.ns, &origin, spec));
        }
    }
}

/// `transport:nexthop` → the smart hosts (empty: MX of the recipient's
/// domain), or why it is not an SMTP route.
fn next_hop(value: &str) -> Result<Vec<String>, String> {
    let (transport, hop) = value.split_once(':').unwrap_or((value, ""));
    match transport {
        "" | "smtp" | "relay" => Ok(list(hop)),
        "error" | "retry" => Err(format!(
            "{transport}: refuses or defers on purpose; mailroute has no such connector"
        )),
        "discard" => Err("discard: mail would be dropped; mailroute never does".into()),
        "local" | "virtual" | "lmtp" => Err(format!(
            "{transport}: a mailbox delivery, not an SMTP next hop"
        )),
        other => Err(format!(
            "{other}: a transport of this Postfix's master.cf; only smtp and relay are SMTP routes"
        )),
    }
}

fn is_address(s: &str) -> bool {
    !s.starts_with(['|', '/', ':'])
        && s.rsplit_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
}
