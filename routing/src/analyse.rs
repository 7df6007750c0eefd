//! The analyser (docs/design.md, "Analysis and status"): finds routes that come back (LoopRisk) and
//! contradictory authority (AuthoritativenessConflict), marks the routes it
//! proves to loop in the table (the resolver then defers them with
//! 451 4.4.6), and checks that every contact's target can be delivered.
//!
//! It walks the table with the resolver's own step function, so what it
//! proves is exactly what the relay would do.

use crate::address::Address;
use crate::crd::Kind;
use crate::report::{Problems, Reason};
use crate::resolve::{Decision, ReplyReason};
use crate::table::index::Next;
use crate::table::{RoutingTable, SpaceAction};
use hashbrown::HashMap;
use std::sync::Arc;

pub(crate) fn analyse(routing: &mut RoutingTable, self_names: &[String], problems: &mut Problems) {
    alias_cycles(routing, problems);
    let contacts = contact_cycles(routing, problems);
    forwards_to_self(routing, self_names, problems);
    relayed_spaces(routing, problems);
    shared_authoritative_spaces(routing, problems);
    contact_routes(routing, &contacts, problems);
}

/// Walk state of a node in a functional graph (each node has at most one successor).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    New,
    OnPath(usize),
    Ends,
    /// On cycle number n.
    InCycle(usize),
    /// Leads into cycle number n.
    Enters(usize),
}

/// Finds the cycles of a functional graph. `succ(i)` is `i`'s successor, if
/// any. Returns each node's state and the cycles (as node lists).
fn find_cycles(n: usize, succ: impl Fn(usize) -> Option<usize>) -> (Vec<Walk>, Vec<Vec<usize>>) {
    let mut state = vec![Walk::New; n];
    let mut cycles: Vec<Vec<usize>> = Vec::new();
    let mut path = Vec::new();
    for start in 0..n {
        if state[start] != Walk::New {
            continue;
        }
        path.clear();
        let mut cur = Some(start);
        let fate = loop {
            let Some(c) = cur else { break Walk::Ends };
            match state[c] {
                Walk::New => {
                    state[c] = Walk::OnPath(path.len());
                    path.push(c);
                    cur = succ(c);
                }
                Walk::OnPath(pos) => {
                    let id = cycles.len();
                    cycles.push(path[pos..].to_vec());
                    for &m in &path[pos..] {
                        state[m] = Walk::InCycle(id);
                    }
                    path.truncate(pos);
                    break Walk::Enters(id);
                }
                Walk::Ends => break Walk::Ends,
                Walk::InCycle(id) | Walk::Enters(id) => break Walk::Enters(id),
            }
        };
        for &m in &path {
            state[m] = fate;
        }
    }
    (state, cycles)
}

fn describe_cycle(cycle: &[String]) -> String {
    let mut parts = cycle.to_vec();
    parts.push(cycle[0].clone());
    parts.join(" → ")
}

/// Alias domains that rewrite in a circle (`a.com` → `b.com` → `a.com`).
fn alias_cycles(routing: &mut RoutingTable, problems: &mut Problems) {
    let spaces = &routing.table().spaces;
    let succ = |i: usize| match &spaces[i].action {
        SpaceAction::RewriteTo(d) => routing.space_index(d).map(|j| j as usize),
        _ => None,
    };
    let (state, cycles) = find_cycles(spaces.len(), succ);
    let names: Vec<Vec<String>> = cycles
        .iter()
        .map(|c| {
            c.iter()
                .map(|&i| format!("AddressSpace/{}", spaces[i].name))
                .collect()
        })
        .collect();
    let mut looping = Vec::new();
    for (i, s) in state.iter().enumerate() {
        match *s {
            Walk::InCycle(id) => {
                looping.push(i);
                problems.add(
                    Kind::AddressSpace,
                    &spaces[i].name,
                    Reason::RewriteCycle,
                    describe_cycle(&names[id]),
                );
            }
            Walk::Enters(id) => problems.add(
                Kind::AddressSpace,
                &spaces[i].name,
                Reason::RewriteCycle,
                format!("rewrites into the cycle {}", describe_cycle(&names[id])),
            ),
            _ => {}
        }
    }
    for i in looping {
        routing.table_mut().spaces[i].loops = true;
    }
}

/// Where one contact's target leads before the next contact.
enum ContactStep {
    /// Another contact (by contact id), through these alias spaces.
    Contact(usize, Vec<u32>),
    /// Into an alias-domain cycle (space index).
    AliasCycle(u32),
    /// Out of the contacts: this address, after this many rewrites, goes to
    /// a connector or is refused.
    Ends(Address, u32),
    /// No target: forwarded as addressed, never rewritten (no edge).
    AsAddressed,
    /// The target does not parse (the compiler refuses such contacts).
    Invalid,
}

/// The contacts in the table: one entry of each, where its target leads,
/// and whether its route loops.
struct Contacts {
    first_entry: Vec<usize>,
    steps: Vec<ContactStep>,
    looping: Vec<bool>,
}

/// Contacts (and alias domains between them) that rewrite in a circle.
fn contact_cycles(routing: &mut RoutingTable, problems: &mut Problems) -> Contacts {
    let (flag, contacts) = find_contact_cycles(routing, problems);
    for e in flag {
        routing.table_mut().addresses[e].loops = true;
    }
    contacts
}

/// The entries to mark as looping (those of contacts on a cycle), and the contacts.
fn find_contact_cycles(routing: &RoutingTable, problems: &mut Problems) -> (Vec<usize>, Contacts) {
    let table = routing.table();
    // Contacts are the nodes; any of a contact's entries stands for it. A
    // contact's entries share one name allocation and the compiler writes
    // them next to each other, so the pointer identifies the contact cheaply.
    let mut ids: HashMap<*const u8, usize> = HashMap::new();
    let mut first_entry: Vec<usize> = Vec::new();
    let mut entry_contact: Vec<usize> = Vec::with_capacity(table.addresses.len());
    let mut previous: Option<(*const u8, usize)> = None;
    for (e, a) in table.addresses.iter().enumerate() {
        let ptr = Arc::as_ptr(&a.contact) as *const u8;
        let id = match previous {
            Some((p, id)) if p == ptr => id,
            _ => *ids.entry(ptr).or_insert_with(|| {
                first_entry.push(e);
                first_entry.len() - 1
            }),
        };
        previous = Some((ptr, id));
        entry_contact.push(id);
    }
    let steps: Vec<ContactStep> = first_entry
        .iter()
        .map(|&e| match &table.addresses[e] {
            a if a.as_addressed() => ContactStep::AsAddressed,
            a => contact_step(routing, &a.target, &entry_contact),
        })
        .collect();
    let (state, cycles) = find_cycles(first_entry.len(), |i| match &steps[i] {
        ContactStep::Contact(j, _) => Some(*j),
        _ => None,
    });

    let contact_name = |id: usize| &*table.addresses[first_entry[id]].contact;
    let space_name = |s: u32| table.spaces[s as usize].name.as_str();
    let mut cycle_names = Vec::with_capacity(cycles.len());
    for cycle in &cycles {
        let mut parts = Vec::new();
        for &m in cycle {
            parts.push(format!("MailContact/{}", contact_name(m)));
            if let ContactStep::Contact(_, via) = &steps[m] {
                parts.extend(
                    via.iter()
                        .map(|&s| format!("AddressSpace/{}", space_name(s))),
                );
            }
        }
        cycle_names.push(describe_cycle(&parts));
    }
    let mut looping = vec![false; first_entry.len()];
    for (id, s) in state.iter().enumerate() {
        let name = contact_name(id);
        match (*s, &steps[id]) {
            (Walk::InCycle(c), step) => {
                looping[id] = true;
                problems.add(
                    Kind::MailContact,
                    name,
                    Reason::RewriteCycle,
                    cycle_names[c].clone(),
                );
                if let ContactStep::Contact(_, via) = step {
                    for &sp in via {
                        problems.add(
                            Kind::AddressSpace,
                            space_name(sp),
                            Reason::RewriteCycle,
                            cycle_names[c].clone(),
                        );
                    }
                }
            }
            (Walk::Enters(c), _) => {
                looping[id] = true;
                problems.add(
                    Kind::MailContact,
                    name,
                    Reason::RewriteCycle,
                    format!("its target leads into the cycle {}", cycle_names[c]),
                );
            }
            (_, ContactStep::AliasCycle(sp)) => {
                looping[id] = true;
                problems.add(
                    Kind::MailContact,
                    name,
                    Reason::RewriteCycle,
                    format!(
                        "its target leads into the alias-domain cycle of AddressSpace/{}",
                        space_name(*sp)
                    ),
                );
            }
            _ => {}
        }
    }
    let flag: Vec<usize> = entry_contact
        .iter()
        .enumerate()
        .filter(|(_, id)| matches!(state[**id], Walk::InCycle(_)))
        .map(|(e, _)| e)
        .collect();
    (
        flag,
        Contacts {
            first_entry,
            steps,
            looping,
        },
    )
}

fn contact_step(routing: &RoutingTable, target: &str, entry_contact: &[usize]) -> ContactStep {
    let Ok(mut addr) = Address::parse(target) else {
        return ContactStep::Invalid;
    };
    let mut via = Vec::new();
    // The contact's own rewrite counts; alias hops are bounded by the number
    // of spaces (alias cycles are already flagged).
    let mut rewrites = 1;
    for _ in 0..=routing.table().spaces.len() {
        match routing.next(&addr) {
            Next::Contact(_, _) => {
                let e = routing
                    .address_index(&addr.key())
                    .expect("entry just found");
                return ContactStep::Contact(entry_contact[e as usize], via);
            }
            Next::Alias(space, to) => {
                let si = routing
                    .space_index(addr.domain())
                    .expect("space just found");
                if space.loops {
                    return ContactStep::AliasCycle(si);
                }
                via.push(si);
                addr = addr.with_domain(to);
                rewrites += 1;
            }
            Next::NotOurs | Next::Space(_) => return ContactStep::Ends(addr, rewrites),
        }
    }
    ContactStep::Invalid
}

/// Connectors whose smart hosts are the relay's own addresses.
fn forwards_to_self(routing: &mut RoutingTable, self_names: &[String], problems: &mut Problems) {
    let mut looping = Vec::new();
    for (i, c) in routing.table().connectors.iter().enumerate() {
        if let Some(h) = c.smart_hosts.iter().find(|h| h.is_one_of(self_names)) {
            looping.push(i);
            problems.add(
                Kind::SmtpConnector,
                &c.name,
                Reason::ForwardsToSelf,
                format!("smart host {h} is this relay's own address: mail sent through it comes straight back"),
            );
        }
    }
    for i in looping {
        routing.table_mut().connectors[i].loops = true;
    }
}

/// InternalRelay / ExternalRelay spaces: is there a route, and is it safe?
fn relayed_spaces(routing: &RoutingTable, problems: &mut Problems) {
    for s in routing
        .table()
        .spaces
        .iter()
        .filter(|s| s.action.is_relay())
    {
        let Some(choice) = routing.connector_for(&s.pattern.representative()) else {
            problems.add(
                Kind::AddressSpace,
                &s.name,
                Reason::RelayWithoutRoute,
                format!(
                    "{} space {} has no enabled SmtpConnector covering it: its unknown recipients are deferred (451 4.4.0)",
                    s.action.describe(),
                    s.pattern
                ),
            );
            continue;
        };
        let c = routing.connector(choice.connector);
        if c.loops {
            problems.add(
                Kind::AddressSpace,
                &s.name,
                Reason::ForwardsToSelf,
                format!(
                    "its unknown recipients go to SmtpConnector/{}, which delivers to this relay itself: the last system forwards them back",
                    c.name
                ),
            );
        }
        if c.smart_hosts.is_empty() {
            let msg = |other: String| {
                format!(
                    "SmtpConnector/{} (no smart hosts) delivers the accepted {} space {} by MX, and the MX of a domain we accept is likely this relay ({other})",
                    c.name,
                    s.action.describe(),
                    s.pattern
                )
            };
            problems.add(
                Kind::AddressSpace,
                &s.name,
                Reason::MxForAcceptedDomain,
                msg(format!("covered by {}", choice.pattern)),
            );
            problems.add(
                Kind::SmtpConnector,
                &c.name,
                Reason::MxForAcceptedDomain,
                msg(format!("AddressSpace/{}", s.name)),
            );
        }
    }
}

/// A connector other than `*` that covers part of an authoritative space:
/// unknown recipients there are refused, never sent to it. Not a conflict
/// where the space has recipients forwarded as addressed in that part: that
/// is the gateway pattern (the listed recipients go to the mailbox servers
/// behind the connector; everyone else is refused).
fn shared_authoritative_spaces(routing: &RoutingTable, problems: &mut Problems) {
    let table = routing.table();
    // The domains of recipients forwarded as addressed, once each.
    let mut gateway_domains: Vec<&str> = table
        .addresses
        .iter()
        .filter(|a| a.as_addressed())
        .map(|a| a.address.rsplit_once('@').map_or("", |(_, d)| d))
        .collect();
    gateway_domains.sort_unstable();
    gateway_domains.dedup();
    for c in &table.connectors {
        for (pattern, _) in &c.address_spaces {
            if *pattern == crate::pattern::DomainPattern::Any {
                continue;
            }
            for (si, s) in table.spaces.iter().enumerate() {
                if s.action != SpaceAction::Authoritative {
                    continue;
                }
                let Some(rep) = pattern.overlap(&s.pattern) else {
                    continue;
                };
                if routing.space_index(&rep) != Some(si as u32) {
                    continue; // a more specific space governs the overlap
                }
                let gateway = gateway_domains
                    .iter()
                    .any(|d| pattern.matches(d) && routing.space_index(d) == Some(si as u32));
                if gateway {
                    continue;
                }
                problems.add(
                    Kind::AddressSpace,
                    &s.name,
                    Reason::SharedAuthoritativeSpace,
                    format!(
                        "SmtpConnector/{} covers {pattern} inside this authoritative space: unknown recipients are refused here, never forwarded (an authoritative space cannot be shared)",
                        c.name
                    ),
                );
                problems.add(
                    Kind::SmtpConnector,
                    &c.name,
                    Reason::SharedAuthoritativeSpace,
                    format!(
                        "{pattern} lies in the authoritative AddressSpace/{} ({}): mail for unknown recipients there is refused, not sent here",
                        s.name, s.pattern
                    ),
                );
            }
        }
    }
}

/// Every contact's target must be deliverable (docs/design.md, "Analysis and status" NoRoute), and
/// so must every address of a contact forwarded as addressed.
fn contact_routes(routing: &RoutingTable, contacts: &Contacts, problems: &mut Problems) {
    for (id, &e) in contacts.first_entry.iter().enumerate() {
        if contacts.looping[id] {
            continue;
        }
        let a = &routing.table().addresses[e];
        if let ContactStep::AsAddressed = contacts.steps[id] {
            as_addressed_routes(routing, e, problems);
            continue;
        }
        // Where the walk left off: the end of the target's own rewrites, or
        // (through other contacts) the target itself.
        let (start, rewrites) = match &contacts.steps[id] {
            ContactStep::Ends(addr, rewrites) => (addr.clone(), *rewrites),
            ContactStep::Contact(..) => match Address::parse(&a.target) {
                Ok(t) => (t, 1),
                Err(_) => continue,
            },
            ContactStep::AliasCycle(_) | ContactStep::AsAddressed | ContactStep::Invalid => {
                continue;
            }
        };
        let decision = routing.resolve_address(start.clone(), &a.target, true, rewrites, &mut ());
        let Decision::Reply(reply) = decision else {
            continue;
        };
        // Resolve again with a trace, only for the few that fail.
        let mut steps = Vec::new();
        routing.resolve_address(start, &a.target, true, rewrites, &mut steps);
        let (reason, why) = match reply.reason {
            ReplyReason::ForwardsToSelf => (
                Reason::ForwardsToSelf,
                "is routed to a connector that delivers to this relay itself",
            ),
            ReplyReason::RewriteCycle => (Reason::RewriteCycle, "leads into a rewrite cycle"),
            _ => (Reason::NoRoute, "cannot be delivered"),
        };
        problems.add(
            Kind::MailContact,
            &a.contact,
            reason,
            format!(
                "target {} {why}: {} {} ({})",
                a.target,
                reply.code,
                reply.enhanced,
                steps.last().map(String::as_str).unwrap_or("")
            ),
        );
    }
}

/// A contact forwarded as addressed: each of its addresses (entries from
/// `first`, next to each other) must reach a connector that is not this
/// relay; one problem per contact names those that cannot.
fn as_addressed_routes(routing: &RoutingTable, first: usize, problems: &mut Problems) {
    let table = routing.table();
    let contact = &table.addresses[first].contact;
    let mine = table.addresses[first..]
        .iter()
        .take_while(|a| Arc::ptr_eq(&a.contact, contact));
    let mut failing: Vec<(Reason, String)> = Vec::new();
    for a in mine {
        let Decision::Reply(reply) = routing.resolve(&a.address, true) else {
            continue;
        };
        let (_, steps) = routing.trace(&a.address, true);
        let reason = match reply.reason {
            ReplyReason::ForwardsToSelf => Reason::ForwardsToSelf,
            _ => Reason::NoRoute,
        };
        failing.push((
            reason,
            format!(
                "{} is forwarded as addressed but {} {} ({})",
                a.address,
                reply.code,
                reply.enhanced,
                steps.last().map(String::as_str).unwrap_or("")
            ),
        ));
    }
    for (reason, message) in failing {
        problems.add(Kind::MailContact, contact, reason, message);
    }
}
