//! What `import postfix` does not turn into objects but affects where
//! Postfix sends mail: each such main.cf parameter is listed with its line
//! and the mail it affects, and mail Postfix delivers itself (its
//! `mydestination` domains) is checked against the imported objects, so the
//! summary says where they would refuse or send elsewhere what Postfix
//! delivered.

use super::source::MainCf;
use super::{Imported, Skipped};
use routing::{CompileOptions, Decision};

/// Parameters that change routing and have no counterpart in the kinds,
/// with the mail each affects. Listed when main.cf sets them (those whose
/// Postfix default is in force too, where that default routes mail: see
/// [`DEFAULTS`]).
const NOT_IMPORTED: &[(&str, &str)] = &[
    (
        "mydestination",
        "mail to these domains is delivered by Postfix itself (local(8): alias_maps, local users); mailroute delivers to no mailbox: route them to the server that does",
    ),
    (
        "alias_maps",
        "aliases of the mydestination domains; `mailroute import sendmail --aliases FILE --local-domain DOMAIN` imports an aliases file",
    ),
    (
        "local_recipient_maps",
        "which local users exist in the mydestination domains",
    ),
    (
        "luser_relay",
        "mail to unknown local users, sent there instead of refused",
    ),
    (
        "mynetworks",
        "clients here may relay to any domain: give them a SendingGrant (spec.networks) or the relay's --relay-networks",
    ),
    (
        "mynetworks_style",
        "which clients may relay to any domain (mynetworks): give them a SendingGrant or the relay's --relay-networks",
    ),
    (
        "smtpd_relay_restrictions",
        "who may relay and to where: SendingGrants say that in mailroute",
    ),
    (
        "smtpd_recipient_restrictions",
        "recipients refused or allowed by client, sender or lookup table",
    ),
    (
        "virtual_mailbox_domains",
        "mail to these domains is delivered to mailboxes by Postfix (virtual(8))",
    ),
    (
        "virtual_mailbox_maps",
        "the mailboxes of virtual_mailbox_domains",
    ),
    (
        "canonical_maps",
        "sender and recipient addresses rewritten before routing",
    ),
    (
        "recipient_canonical_maps",
        "recipient addresses rewritten before routing: a MailContact with that targetAddress does this",
    ),
    ("sender_canonical_maps", "sender addresses rewritten"),
    (
        "masquerade_domains",
        "sender addresses' subdomains stripped",
    ),
    ("smtp_generic_maps", "addresses rewritten as mail leaves"),
    (
        "sender_dependent_relayhost_maps",
        "the next hop chosen by sender; mailroute routes by recipient",
    ),
    (
        "sender_dependent_default_transport_maps",
        "the transport chosen by sender; mailroute routes by recipient",
    ),
    (
        "smtp_fallback_relay",
        "where mail goes when its next hop cannot be reached (mailroute answers 4xx and the sender retries)",
    ),
    (
        "fallback_relay",
        "where mail goes when its next hop cannot be reached (mailroute answers 4xx and the sender retries)",
    ),
    ("fallback_transport", "mail for unknown local users"),
    ("always_bcc", "a copy of every message to another address"),
    ("recipient_bcc_maps", "copies of mail to some recipients"),
    ("sender_bcc_maps", "copies of mail from some senders"),
];

/// Parameters of local delivery: they matter only where `mydestination`
/// names a domain.
const LOCAL_ONLY: &[&str] = &[
    "alias_maps",
    "local_recipient_maps",
    "luser_relay",
    "fallback_transport",
];

/// Postfix's defaults for the listed parameters whose default routes mail
/// (postconf(5), Debian): local delivery is on unless main.cf turns it off.
const DEFAULTS: &[(&str, &str)] = &[
    (
        "mydestination",
        "$myhostname, localhost.$mydomain, localhost",
    ),
    ("alias_maps", "hash:/etc/aliases"),
];

/// Lists every parameter of [`NOT_IMPORTED`] that is in force, and notes
/// what the imported objects do with mail to each `mydestination` domain.
pub fn report(cf: &MainCf, out: &mut Imported) {
    // With `mydestination =` (a gateway's usual setting) nothing is
    // delivered locally: local(8)'s parameters then route no mail.
    let local = cf
        .get_raw("mydestination", DEFAULTS)
        .is_some_and(|(v, _)| !v.trim().is_empty());
    for (name, affects) in NOT_IMPORTED {
        if !local && LOCAL_ONLY.contains(name) {
            continue;
        }
        // As written: `$myhostname` is the machine's name, not in main.cf.
        let Some((value, origin)) = cf.get_raw(name, DEFAULTS) else {
            continue;
        };
        if value.trim().is_empty() {
            continue;
        }
        out.skipped.push(Skipped {
            origin,
            entry: format!("{name} = {}", value.trim()),
            why: format!("not imported: {affects}"),
        });
    }
    local_delivery(cf, out);
}

/// For each concrete `mydestination` domain, what the imported objects do
/// with its postmaster: Postfix delivered it itself.
fn local_delivery(cf: &MainCf, out: &mut Imported) {
    let Some((value, origin)) = cf.get_raw("mydestination", DEFAULTS) else {
        return;
    };
    let domains: Vec<String> = super::source::list(&value)
        .iter()
        // Only what main.cf names: not the machine's own name, not tables.
        .filter_map(|item| cf.expand_known(item, DEFAULTS))
        .flat_map(|d| super::source::list(&d))
        .filter(|d| d.contains('.') && !d.contains([':', '/']))
        .map(|d| d.to_lowercase())
        .collect();
    if domains.is_empty() {
        return;
    }
    let compiled = routing::compile(&out.objects(), &CompileOptions::default());
    for d in domains {
        let address = format!("postmaster@{d}");
        let what = match compiled.routing.resolve(&address, false) {
            Decision::Reply(r) if r.code >= 400 => format!(
                "would be refused by the imported objects ({} {} {})",
                r.code, r.enhanced, r.text
            ),
            Decision::Reply(r) => format!("would be answered {} {}", r.code, r.enhanced),
            Decision::Forward {
                recipient,
                connector,
            } => format!(
                "would be forwarded to SmtpConnector/{} as <{recipient}>",
                compiled.routing.connector(connector).name
            ),
        };
        out.notes.push(format!(
            "{address}, which Postfix delivers itself (mydestination, {origin}), {what}"
        ));
    }
}
