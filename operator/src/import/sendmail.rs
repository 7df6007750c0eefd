//! `mailroute import sendmail`: sendmail's aliases(5), virtusertable and
//! mailertable as the four kinds, through the same builder as Postfix's
//! maps (they say the same things):
//!
//! - `--local-domain D` (sendmail's `$=w`, local-host-names): accepted,
//!   Authoritative; aliases(5) `name: target` applies to `name@D` for each,
//!   a bare local target meaning `target@` the first local domain.
//! - virtusertable: `user@d target` a MailContact, `@d %1@other` `d` an
//!   alias domain of `other`; its domains are accepted (Authoritative).
//! - mailertable: `d` and `.d` (subdomains) → `mailer:host` with an SMTP
//!   mailer (`smtp`, `esmtp`, `smtp8`, `dsmtp`, `relay`) as connectors;
//!   `host1:host2` is a fail-over list.
//!
//! Listed, not imported: pipes, files and `:include:` lists, several
//! targets, `error:` entries, catch-alls to one address, other mailers.

use super::build::{Routing, build};
use super::source::{list, parse_table};
use super::{Entry, Imported, Origin, Skipped};

/// The files, as the command line names them: (name, text).
pub struct Files<'a> {
    pub aliases: Option<(&'a str, &'a str)>,
    pub virtusertable: Option<(&'a str, &'a str)>,
    pub mailertable: Option<(&'a str, &'a str)>,
    pub local_domains: &'a [String],
}

const SMTP_MAILERS: &[&str] = &["smtp", "esmtp", "smtp8", "dsmtp", "relay"];

pub fn import(files: &Files, namespace: Option<&str>) -> Result<Imported, String> {
    let mut out = Imported::default();
    let skip = |out: &mut Imported, origin: &Origin, entry: String, why: &str| {
        out.skipped.push(Skipped {
            origin: origin.clone(),
            entry,
            why: why.into(),
        })
    };
    let local: Vec<String> = files
        .local_domains
        .iter()
        .map(|d| d.to_lowercase())
        .collect();
    let given = Origin {
        file: "--local-domain".into(),
        line: 0,
    };
    let mut accepted: Vec<(String, Origin)> =
        local.iter().map(|d| (d.clone(), given.clone())).collect();
    let mut aliases: Vec<Entry> = Vec::new();

    if let Some((file, text)) = files.aliases {
        if local.is_empty() {
            return Err(format!(
                "{file}: aliases(5) names have no domain: say which with --local-domain DOMAIN (sendmail's local-host-names)"
            ));
        }
        for (key, value, origin) in parse_aliases(file, text, &mut out.skipped) {
            let entry = format!("{key}: {value}");
            if key.contains('@') {
                skip(
                    &mut out,
                    &origin,
                    entry,
                    "an aliases(5) name is a local part",
                );
                continue;
            }
            if value.trim_start_matches('"').starts_with('|') {
                skip(&mut out, &origin, entry, "a pipe to a program: not a route");
                continue;
            }
            let targets: Vec<String> = list(&value)
                .into_iter()
                .map(|t| qualify(&t, &local[0]))
                .collect();
            for d in &local {
                aliases.push(Entry {
                    key: format!("{key}@{d}"),
                    value: targets.join(", "),
                    origin: origin.clone(),
                });
            }
        }
    }
    if let Some((file, text)) = files.virtusertable {
        let (entries, skipped) = parse_table(file, text);
        out.skipped.extend(skipped);
        for e in entries {
            let entry = format!("{} {}", e.key, e.value);
            let Some((local_part, domain)) = e.key.rsplit_once('@') else {
                skip(
                    &mut out,
                    &e.origin,
                    entry,
                    "a virtusertable key is user@domain or @domain",
                );
                continue;
            };
            if !accepted.iter().any(|(d, _)| d == domain) {
                accepted.push((domain.to_owned(), e.origin.clone()));
            }
            let value = e.value.trim();
            if value.starts_with("error:") {
                skip(
                    &mut out,
                    &e.origin,
                    entry,
                    "error: refuses on purpose; a recipient without a contact is refused anyway in an Authoritative space",
                );
                continue;
            }
            // `@d %1@other`: the user part kept, the domain rewritten.
            let value = match value.strip_prefix("%1@") {
                Some(other) if local_part.is_empty() => format!("@{other}"),
                _ => qualify(value, local.first().map_or(domain, String::as_str)),
            };
            aliases.push(Entry {
                key: e.key.clone(),
                value,
                origin: e.origin.clone(),
            });
        }
    }
    let mut transports = Vec::new();
    if let Some((file, text)) = files.mailertable {
        let (entries, skipped) = parse_table(file, text);
        out.skipped.extend(skipped);
        for e in entries {
            let entry = format!("{} {}", e.key, e.value);
            let (mailer, host) = e.value.split_once(':').unwrap_or((e.value.as_str(), ""));
            if !SMTP_MAILERS.contains(&mailer) {
                let why = format!(
                    "{mailer}: not an SMTP mailer (only {} are)",
                    SMTP_MAILERS.join(", ")
                );
                skip(&mut out, &e.origin, entry, &why);
                continue;
            }
            // sendmail separates fail-over hosts with `:`.
            let hosts = host
                .split(':')
                .filter(|h| !h.is_empty())
                .collect::<Vec<_>>()
                .join(",");
            transports.push(Entry {
                key: e.key.clone(),
                value: format!("smtp:{hosts}"),
                origin: e.origin.clone(),
            });
        }
    }
    let routing = Routing {
        virtual_domains: accepted,
        relay_domains: Vec::new(),
        aliases,
        recipients: Vec::new(),
        recipients_set: false,
        transports,
        relayhost: None,
        default_transport: None,
    };
    Ok(build(routing, out, namespace))
}

/// A bare local name as an address in `domain`; addresses, pipes, files
/// and `:include:` lists as they are (the builder reports those).
fn qualify(target: &str, domain: &str) -> String {
    let t = target.trim().trim_matches('"');
    if t.contains('@') || t.starts_with(['|', '/', ':']) {
        t.to_owned()
    } else {
        format!("{t}@{domain}")
    }
}

/// aliases(5): `name: value, value`; a line starting with white space
/// continues the one before; `#` comments.
fn parse_aliases(
    file: &str,
    text: &str,
    skipped: &mut Vec<Skipped>,
) -> Vec<(String, String, Origin)> {
    let mut out: Vec<(String, String, Origin)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let origin = Origin {
            file: file.to_owned(),
            line: i + 1,
        };
        if line.starts_with([' ', '\t']) {
            match out.last_mut() {
                Some((_, value, _)) => {
                    value.push(' ');
                    value.push_str(trimmed);
                }
                None => skipped.push(Skipped {
                    origin,
                    entry: trimmed.to_owned(),
                    why: "a continuation line with nothing to continue".into(),
                }),
            }
            continue;
        }
        match trimmed.split_once(':') {
            Some((name, value)) if !name.trim().is_empty() => {
                out.push((name.trim().to_lowercase(), value.trim().to_owned(), origin));
            }
            _ => skipped.push(Skipped {
                origin,
                entry: trimmed.to_owned(),
                why: "not `name: value`".into(),
            }),
        }
    }
    out
}
