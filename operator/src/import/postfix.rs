//! `mailroute import postfix`: a Postfix relay's `main.cf` and its maps as
//! the four kinds, preserving how Postfix routes (postconf(5), virtual(5),
//! transport(5)):
//!
//! - `relay_domains`: each domain *and its subdomains* (Postfix matches
//!   relay_domains that way: `parent_domain_matches_subdomains`), so an
//!   AddressSpace for `d` and one for `*.d`. With `relay_recipient_maps`
//!   only listed recipients are accepted: Authoritative, the listed ones
//!   MailContacts without a target (forwarded as addressed); an `@d` entry
//!   there accepts everyone, as does having no recipient map: InternalRelay
//!   when some address of the domain is aliased, else ExternalRelay.
//! - `virtual_alias_domains` (default `$virtual_alias_maps`: its keys
//!   without `@`): Authoritative, that domain only.
//! - `virtual_alias_maps`: `user@d target` → a MailContact (one per target,
//!   holding every key that points at it); `user@d user@d` (itself) → one
//!   forwarded as addressed; `@d @other` → `d` an alias domain of `other`.
//! - `transport_maps`: `d` → the connector's address space `d`, `.d` →
//!   `*.d`, `*` → `*`; one SmtpConnector per next hop (`smtp:[host]:port`,
//!   `relay:host`, empty = MX of the recipient's domain).
//! - `relayhost` (or `default_transport`'s next hop): the `*` connector when
//!   `transport_maps` has no `*`; without either, a `*` connector that
//!   delivers by MX, as Postfix does.
//!
//! What the kinds cannot say is listed as skipped: several targets, pipes,
//! files, `:include:`, catch-alls to one address, per-recipient transports,
//! regular-expression and database maps (also when a file given on the
//! command line stands for main.cf's indexed ones), and every main.cf
//! parameter that routes mail without a counterpart in the kinds
//! (`mydestination` and local delivery, `mynetworks`, … see
//! [`super::postfix_unimported`]).

use super::build::{Routing, build};
use super::source::{MainCf, list, parse_table};
use super::{Entry, Imported, Origin, Skipped};

/// The files to read, as the command line gives them; a map main.cf names
/// is read from its source file (`hash:/etc/postfix/virtual` →
/// `/etc/postfix/virtual`) unless given here.
#[derive(Default)]
pub struct Overrides {
    pub virtual_alias_maps: Option<String>,
    pub transport_maps: Option<String>,
    pub relay_recipient_maps: Option<String>,
    /// A `relay_domains` value, replacing main.cf's.
    pub relay_domains: Option<String>,
}

/// Postfix's defaults for what main.cf does not set (Postfix 3.x,
/// compatibility_level 2 and later).
const DEFAULTS: &[(&str, &str)] = &[
    ("virtual_alias_domains", "$virtual_alias_maps"),
    ("default_transport", "smtp"),
];

/// Reads a file (a map's source) by path: the command line's file system.
pub type Read<'a> = &'a dyn Fn(&str) -> Result<String, String>;

pub fn import(
    main_cf_name: &str,
    main_cf: &str,
    overrides: &Overrides,
    read: Read,
    namespace: Option<&str>,
) -> Result<Imported, String> {
    let cf = MainCf::parse(main_cf_name, main_cf)?;
    let mut out = Imported::default();
    let mut tables = Tables {
        read,
        skipped: &mut out.skipped,
    };

    let aliases = tables.param(&cf, "virtual_alias_maps", &overrides.virtual_alias_maps)?;
    let transports = tables.param(&cf, "transport_maps", &overrides.transport_maps)?;
    let recipients_set = overrides.relay_recipient_maps.is_some()
        || cf
            .get("relay_recipient_maps", DEFAULTS)
            .is_some_and(|(v, _)| !v.trim().is_empty());
    let recipients = tables.param(&cf, "relay_recipient_maps", &overrides.relay_recipient_maps)?;
    let relay_domains = match &overrides.relay_domains {
        Some(v) => {
            let origin = Origin {
                file: "--relay-domains".into(),
                line: 0,
            };
            tables.domains(v, &origin)?
        }
        None => match cf.get("relay_domains", DEFAULTS) {
            Some((v, origin)) => tables.domains(&v, &origin)?,
            None => Vec::new(),
        },
    };
    // Left at its default (`$virtual_alias_maps`), the alias maps' keys
    // that are domains; set, its own list.
    let virtual_domains = match cf.get("virtual_alias_domains", &[]) {
        Some((v, _)) if v.trim() == cf_alias_maps_value(&cf) => domain_keys(&aliases),
        Some((v, origin)) => tables.domains(&v, &origin)?,
        None => domain_keys(&aliases),
    };
    let relayhost = cf
        .get("relayhost", DEFAULTS)
        .filter(|(v, _)| !v.trim().is_empty());
    let default_transport = cf.get("default_transport", DEFAULTS);
    if let Some((v, origin)) = cf.get("relay_transport", DEFAULTS)
        && v.contains(':')
        && !v.trim_end().ends_with(':')
    {
        out.skipped.push(Skipped {
            origin,
            entry: format!("relay_transport = {v}"),
            why: "a next hop in relay_transport is not imported; give the relay domains transport_maps entries".into(),
        });
    }

    let routing = Routing {
        virtual_domains,
        relay_domains,
        aliases,
        recipients,
        recipients_set,
        transports,
        relayhost,
        default_transport,
    };
    let mut imported = build(routing, out, namespace);
    super::postfix_unimported::report(&cf, &mut imported);
    Ok(imported)
}

/// What virtual_alias_maps is set to, for telling whether
/// virtual_alias_domains was left at its default.
fn cf_alias_maps_value(cf: &MainCf) -> String {
    cf.get("virtual_alias_maps", DEFAULTS)
        .map(|(v, _)| v.trim().to_owned())
        .unwrap_or_default()
}

/// Keys without `@` that look like domains.
fn domain_keys(entries: &[Entry]) -> Vec<(String, Origin)> {
    entries
        .iter()
        .filter(|e| !e.key.contains('@') && e.key.contains('.'))
        .map(|e| (e.key.trim_start_matches('.').to_owned(), e.origin.clone()))
        .collect()
}

struct Tables<'a> {
    read: Read<'a>,
    skipped: &'a mut Vec<Skipped>,
}

impl Tables<'_> {
    /// The entries of every table a map parameter lists (or of the file
    /// given on the command line instead).
    fn param(
        &mut self,
        cf: &MainCf,
        name: &str,
        given: &Option<String>,
    ) -> Result<Vec<Entry>, String> {
        let in_cf = cf.get(name, DEFAULTS);
        let mut entries = match given {
            Some(file) => self.table_file(file)?,
            None => Vec::new(),
        };
        let Some((value, origin)) = in_cf else {
            return Ok(entries);
        };
        for item in list(&value) {
            match table_path(&item) {
                // The file given on the command line stands for main.cf's
                // indexed tables; the others are listed all the same.
                Ok(_) if given.is_some() => {}
                Ok(path) => entries.extend(self.table_file(&path)?),
                Err(why) => self.skipped.push(Skipped {
                    origin: origin.clone(),
                    entry: format!("{name} = … {item}"),
                    why,
                }),
            }
        }
        Ok(entries)
    }

    fn table_file(&mut self, path: &str) -> Result<Vec<Entry>, String> {
        let text = (self.read)(path)?;
        let (entries, skipped) = parse_table(path, &text);
        self.skipped.extend(skipped);
        Ok(entries)
    }

    /// A domain list (relay_domains, virtual_alias_domains): names, files
    /// of names, and tables whose keys are the names.
    fn domains(&mut self, value: &str, origin: &Origin) -> Result<Vec<(String, Origin)>, String> {
        let mut out = Vec::new();
        for item in list(value) {
            if item.starts_with('/') {
                let text = (self.read)(&item)?;
                for (i, line) in text.lines().enumerate() {
                    let line = line.split('#').next().unwrap_or_default();
                    for d in list(line) {
                        let o = Origin {
                            file: item.clone(),
                            line: i + 1,
                        };
                        out.push((d.to_lowercase(), o));
                    }
                }
            } else if item.contains(':') {
                match table_path(&item) {
                    Ok(path) => {
                        for e in self.table_file(&path)? {
                            out.push((e.key, e.origin));
                        }
                    }
                    Err(why) => self.skipped.push(Skipped {
                        origin: origin.clone(),
                        entry: item,
                        why,
                    }),
                }
            } else {
                out.push((item.to_lowercase(), origin.clone()));
            }
        }
        for (d, _) in &mut out {
            *d = d.trim_start_matches('.').to_owned();
        }
        Ok(out)
    }
}

/// The source file of an indexed table (`hash:/etc/postfix/virtual`); why
/// not, for the table types whose content is not a file of entries.
fn table_path(item: &str) -> Result<String, String> {
    let item = item.strip_prefix("proxy:").unwrap_or(item);
    let Some((kind, path)) = item.split_once(':') else {
        return Err("not a lookup table".into());
    };
    match kind {
        "hash" | "btree" | "lmdb" | "cdb" | "dbm" | "texthash" | "sdbm" => Ok(path.to_owned()),
        "regexp" | "pcre" => {
            Err("a regular-expression map: its patterns cannot be turned into objects".into())
        }
        _ => Err(format!(
            "a {kind}: table: export its entries to a file and give it on the command line"
        )),
    }
}
