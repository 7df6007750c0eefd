//! `mailroute import csvde`: contacts from an Active Directory / Exchange
//! export (`csvde -f out.csv -r "(objectClass=contact)" -l
//! "objectClass,dn,cn,sn,givenName,displayName,proxyAddresses,targetAddress,mail,mailNickname"`).
//!
//! Each `contact` row (and any other row with a `targetAddress`: a
//! mail-enabled user) becomes a MailContact: `targetAddress` without its
//! `SMTP:` prefix; `proxyAddresses` split on `;`, `SMTP:` (the primary)
//! first, then the `smtp:` ones, then `mail` if it is not among them; other
//! address types (`X500:`, `SIP:`, …) are kept in the annotation
//! `mailroute.io/other-proxy-addresses` and counted. Names come from
//! `mailNickname`, else `cn`, made DNS-1123 labels and unique.
//!
//! Quoted fields, commas in DNs, doubled quotes, a UTF-8 or UTF-16 BOM
//! (`csvde -u`) and CRLF are read as csvde writes them; a row that cannot
//! be read, or whose target is not an SMTP address, is reported with its
//! line and skipped, never guessed. The export names no accepted domains:
//! `--authoritative DOMAIN` writes Authoritative AddressSpaces, and the
//! summary names the domains the contacts' addresses are in.

use super::{Imported, Names, Origin, Skipped, SpaceKind};
use routing::crd::AddressSpaceType;
use std::collections::BTreeMap;

/// The annotation keeping proxy addresses of types other than SMTP.
pub const OTHER_PROXIES_ANNOTATION: &str = "mailroute.io/other-proxy-addresses";

pub fn import(
    file: &str,
    bytes: &[u8],
    authoritative: &[String],
    namespace: Option<&str>,
) -> Result<Imported, String> {
    // csv counts a CRLF-ended file's lines one short: read it as LF.
    let text = decode(bytes)
        .map_err(|e| format!("{file}: {e}"))?
        .replace("\r\n", "\n");
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format!("{file}: the header line: {e}"))?
        .iter()
        .map(|h| h.trim().to_lowercase())
        .collect();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let Some(target_col) = column("targetaddress") else {
        return Err(format!(
            "{file}: no targetAddress column (export it: csvde -l \"...,targetAddress,...\")"
        ));
    };
    let col = |name| column(name);
    let (class_col, cn_col, nick_col, proxies_col, mail_col) = (
        col("objectclass"),
        col("cn"),
        col("mailnickname"),
        col("proxyaddresses"),
        col("mail"),
    );
    let (given_col, sn_col, display_col) = (col("givenname"), col("sn"), col("displayname"));

    let mut out = Imported::default();
    let mut names = Names::default();
    // Where each name was claimed, to report the rows renamed.
    let mut first_named: BTreeMap<String, Origin> = BTreeMap::new();
    let mut domains: BTreeMap<String, usize> = BTreeMap::new();
    let mut other_types = 0;
    for result in reader.records() {
        let record = match result {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                out.skipped.push(Skipped {
                    origin: Origin {
                        file: file.into(),
                        line,
                    },
                    entry: "(a row)".into(),
                    why: format!("cannot be read: {e}"),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
        let origin = Origin {
            file: file.into(),
            line,
        };
        let field = |c: Option<usize>| {
            c.and_then(|c| record.get(c))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let who = field(cn_col)
            .or(field(nick_col))
            .unwrap_or("(no cn)")
            .to_owned();
        let skip = |out: &mut Imported, why: String| {
            out.skipped.push(Skipped {
                origin: origin.clone(),
                entry: who.clone(),
                why,
            })
        };
        if record.len() != headers.len() {
            skip(
                &mut out,
                format!(
                    "{} fields where the header has {}",
                    record.len(),
                    headers.len()
                ),
            );
            continue;
        }
        let class = field(class_col).unwrap_or("contact").to_lowercase();
        let Some(target) = field(Some(target_col)) else {
            if class == "contact" {
                skip(&mut out, "a contact without targetAddress".into());
            } else {
                skip(
                    &mut out,
                    format!(
                        "objectClass {class} without targetAddress: a mailbox or group, not a contact"
                    ),
                );
            }
            continue;
        };
        let target = match split_typed(target) {
            (kind, a) if kind == "smtp" && is_address(a) => a.to_owned(),
            (kind, _) => {
                skip(
                    &mut out,
                    format!("targetAddress {target:?} is not an SMTP address ({kind})"),
                );
                continue;
            }
        };
        let mut primary = Vec::new();
        let mut secondary = Vec::new();
        let mut others = Vec::new();
        for p in field(proxies_col).unwrap_or_default().split(';') {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            match split_typed(p) {
                (kind, a) if kind == "smtp" && is_address(a) => {
                    // Case of the prefix: SMTP: is the primary.
                    if p.starts_with("SMTP:") {
                        primary.push(a.to_owned());
                    } else {
                        secondary.push(a.to_owned());
                    }
                }
                _ => others.push(p.to_owned()),
            }
        }
        let mut addresses = primary;
        addresses.extend(secondary);
        if let Some(mail) = field(mail_col)
            && is_address(mail)
            && !addresses.iter().any(|a| a.eq_ignore_ascii_case(mail))
        {
            addresses.push(mail.to_owned());
        }
        for a in &addresses {
            if let Some((_, d)) = a.rsplit_once('@') {
                *domains.entry(d.to_lowercase()).or_default() += 1;
            }
        }
        let raw_name = field(nick_col)
            .or(field(cn_col))
            .unwrap_or(&target)
            .to_owned();
        let name = names.claim(&raw_name);
        let wanted = super::dns_label(&raw_name);
        if let Some(first) = first_named.get(&wanted).filter(|_| name != wanted) {
            out.notes.push(format!(
                "{origin}: {raw_name:?} is also the name of the contact at {first}: this one is MailContact/{name}"
            ));
        }
        first_named.insert(name.clone(), origin.clone());
        let mut c = super::contact(name, namespace, &origin, addresses, Some(target));
        c.spec.alias = field(nick_col).map(str::to_owned);
        c.spec.given_name = field(given_col).map(str::to_owned);
        c.spec.surname = field(sn_col).map(str::to_owned);
        c.spec.display_name = field(display_col).map(str::to_owned);
        if !others.is_empty() {
            other_types += others.len();
            c.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(OTHER_PROXIES_ANNOTATION.into(), others.join(";"));
        }
        out.contacts.push(c);
    }
    let mut space_names = Names::default();
    let given = Origin {
        file: "--authoritative".into(),
        line: 0,
    };
    for d in authoritative {
        let d = d.to_lowercase();
        let name = space_names.claim(&d);
        let kind = SpaceKind::Type(AddressSpaceType::Authoritative);
        out.spaces
            .push(super::space(name, namespace, &given, &d, kind));
    }
    let uncovered: Vec<String> = domains
        .iter()
        .filter(|(d, _)| !authoritative.iter().any(|a| a.eq_ignore_ascii_case(d)))
        .map(|(d, n)| format!("{d} ({n})"))
        .collect();
    if !uncovered.is_empty() {
        out.notes.push(format!(
            "addresses in domains no --authoritative names: {}; they are accepted only once an AddressSpace covers them",
            uncovered.join(", ")
        ));
    }
    if other_types > 0 {
        out.notes.push(format!(
            "{other_types} proxy address(es) of other types (X500:, SIP:, …) kept in the annotation {OTHER_PROXIES_ANNOTATION}"
        ));
    }
    Ok(out)
}

/// UTF-8 (with or without a BOM) or UTF-16 with its BOM (`csvde -u`).
fn decode(bytes: &[u8]) -> Result<String, String> {
    let utf16 = |b: &[u8], le: bool| {
        let units = b.chunks_exact(2).map(|c| {
            if le {
                u16::from_le_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], c[1]])
            }
        });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|e| format!("not UTF-16: {e}"))
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => std::str::from_utf8(rest)
            .map(str::to_owned)
            .map_err(|e| format!("not UTF-8: {e}")),
        [0xFF, 0xFE, rest @ ..] => utf16(rest, true),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, false),
        _ => std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| format!("not UTF-8 (export with csvde -u for Unicode): {e}")),
    }
}

/// `SMTP:a@b` → ("smtp", "a@b"); an address without a type is SMTP.
fn split_typed(value: &str) -> (String, &str) {
    match value.split_once(':') {
        Some((kind, rest)) if !kind.contains('@') => (kind.to_lowercase(), rest.trim()),
        _ => ("smtp".into(), value),
    }
}

fn is_address(s: &str) -> bool {
    s.rsplit_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.contains(char::is_whitespace))
}
