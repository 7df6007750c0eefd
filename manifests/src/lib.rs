//! Reading mailroute manifests from files and directories (for `mailroute`
//! and `mailroute-relay --manifests`): multi-document YAML,
//! `kind: List`, the four mailroute kinds; every error names the file and,
//! where known, the line.

use anyhow::Result;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use routing::Objects;
use routing::crd::{
    API_VERSION, AddressSpace, GROUP, Kind, MailContact, RecipientPolicy, SmtpConnector,
};
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

/// A problem with the input itself (exit code 2).
#[derive(Debug)]
pub struct InputError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for InputError {}

/// The objects read, by namespace (`""` for objects that name none).
#[derive(Default)]
pub struct Manifests {
    pub namespaces: BTreeMap<String, Objects>,
    /// Objects of other kinds that were skipped, for a note on stderr.
    pub skipped: Vec<String>,
}

impl Manifests {
    /// The one namespace to work on: `wanted`, or the only one there is.
    pub fn single(mut self, wanted: Option<&str>) -> Result<(String, Objects)> {
        if let Some(ns) = wanted {
            let objects = self.namespaces.remove(ns).unwrap_or_default();
            return Ok((ns.to_owned(), objects));
        }
        match self.namespaces.len() {
            0 => Ok((String::new(), Objects::default())),
            1 => Ok(self.namespaces.pop_first().expect("one namespace")),
            _ => {
                let names: Vec<String> = self.namespaces.keys().map(|n| display_ns(n)).collect();
                anyhow::bail!(
                    "the manifests hold objects of several namespaces ({}): choose one with --namespace",
                    names.join(", ")
                )
            }
        }
    }
}

pub fn display_ns(ns: &str) -> String {
    if ns.is_empty() {
        "(none)".into()
    } else {
        ns.to_owned()
    }
}

/// Reads every path: a file, or every `*.yaml` / `*.yml` directly in a directory.
pub fn read(paths: &[PathBuf]) -> Result<Manifests, InputError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|e| io_error(p, e))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                })
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    let mut reader = Reader::default();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| io_error(f, e))?;
        reader.file(f, &text)?;
    }
    Ok(reader.out)
}

fn io_error(path: &Path, e: std::io::Error) -> InputError {
    InputError {
        file: path.to_owned(),
        line: None,
        message: e.to_string(),
    }
}

/// Where a document starts: errors in it point here (or at the exact line
/// when the YAML parser knows it).
#[derive(Clone, Copy)]
struct Loc<'a> {
    file: &'a Path,
    line: usize,
}

impl Loc<'_> {
    fn err(&self, message: String) -> InputError {
        InputError {
            file: self.file.to_owned(),
            line: Some(self.line),
            message,
        }
    }
}

impl fmt::Display for Loc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

#[derive(Default)]
struct Reader {
    out: Manifests,
    /// (namespace, kind, name) → where it was first defined.
    seen: HashMap<(String, Kind, String), String>,
}

/// One object read from a document.
enum Item {
    AddressSpace(AddressSpace),
    RecipientPolicy(RecipientPolicy),
    MailContact(MailContact),
    SmtpConnector(SmtpConnector),
    /// An object of another kind, for the note on stderr.
    Skipped(String),
}

/// Documents parsed per thread: YAML parsing dominates reading, and each
/// document parses on its own.
const PARSE_THREADS: usize = 2;

impl Reader {
    fn file(&mut self, file: &Path, text: &str) -> Result<(), InputError> {
        let docs = split_documents(text);
        let parse = |chunk: &[(usize, &str)]| -> Vec<Result<Vec<Item>, InputError>> {
            chunk
                .iter()
                .map(|&(line, doc)| parse_document(Loc { file, line }, doc))
                .collect()
        };
        // Results come back in document order, so the first error reported is
        // the first in the file, as it would be without threads.
        let results: Vec<Result<Vec<Item>, InputError>> = if docs.len() < 64 {
            parse(&docs)
        } else {
            let chunk = docs.len().div_ceil(PARSE_THREADS);
            std::thread::scope(|scope| {
                let handles: Vec<_> = docs
                    .chunks(chunk)
                    .map(|c| scope.spawn(move || parse(c)))
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("parser thread"))
                    .collect()
            })
        };
        for (result, &(line, _)) in results.into_iter().zip(&docs) {
            for item in result? {
                self.add(item, Loc { file, line })?;
            }
        }
        Ok(())
    }

    fn add(&mut self, item: Item, at: Loc) -> Result<(), InputError> {
        match item {
            Item::AddressSpace(x) => {
                let ns = self.register(Kind::AddressSpace, &x.metadata, at)?;
                self.out
                    .namespaces
                    .entry(ns)
                    .or_default()
                    .address_spaces
                    .push(x);
            }
            Item::RecipientPolicy(x) => {
                let ns = self.register(Kind::RecipientPolicy, &x.metadata, at)?;
                self.out.namespaces.entry(ns).or_default().policies.push(x);
            }
            Item::MailContact(x) => {
                let ns = self.register(Kind::MailContact, &x.metadata, at)?;
                self.out.namespaces.entry(ns).or_default().contacts.push(x);
            }
            Item::SmtpConnector(x) => {
                let ns = self.register(Kind::SmtpConnector, &x.metadata, at)?;
                self.out
                    .namespaces
                    .entry(ns)
                    .or_default()
                    .connectors
                    .push(x);
            }
            Item::Skipped(note) => self.out.skipped.push(note),
        }
        Ok(())
    }

    /// Checks the name and that no object is defined twice; returns its namespace.
    fn register(&mut self, kind: Kind, meta: &ObjectMeta, at: Loc) -> Result<String, InputError> {
        let name = meta.name.clone().unwrap_or_default();
        if !is_dns_subdomain(&name) {
            return Err(at.err(format!(
                "{kind}: metadata.name {name:?} is not a valid name (lower-case letters, digits, '-' and '.', at most 253)"
            )));
        }
        let ns = meta.namespace.clone().unwrap_or_default();
        let key = (ns.clone(), kind, name.clone());
        if let Some(first) = self.seen.get(&key) {
            return Err(at.err(format!("{kind}/{name} is defined twice (first at {first})")));
        }
        self.seen.insert(key, at.to_string());
        Ok(ns)
    }
}

/// Parses one YAML document into the objects it holds.
fn parse_document(at: Loc, doc: &str) -> Result<Vec<Item>, InputError> {
    let value: Value = serde_yaml_ng::from_str(doc).map_err(|e| {
        let line = e.location().map_or(at.line, |l| at.line + l.line() - 1);
        Loc {
            file: at.file,
            line,
        }
        .err(format!("invalid YAML: {e}"))
    })?;
    let mut items = Vec::new();
    objects(value, at, &mut items)?;
    Ok(items)
}

fn objects(value: Value, at: Loc, items: &mut Vec<Item>) -> Result<(), InputError> {
    let err = |m: String| at.err(m);
    if value.is_null() {
        return Ok(());
    }
    let str_field = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
    let (Some(api_version), Some(kind)) = (str_field("apiVersion"), str_field("kind")) else {
        return Err(err(
            "not a Kubernetes object: apiVersion and kind are required".into(),
        ));
    };
    if kind == "List" || kind.ends_with("List") && api_version == "v1" {
        let Some(list) = value.get("items").and_then(Value::as_sequence).cloned() else {
            return Err(err(format!("{kind} without items")));
        };
        for item in list {
            objects(item, at, items)?;
        }
        return Ok(());
    }
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    if group != GROUP {
        let name = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("?");
        items.push(Item::Skipped(format!("{api_version} {kind}/{name}")));
        return Ok(());
    }
    if api_version != API_VERSION {
        return Err(err(format!(
            "unsupported apiVersion {api_version} (this build reads {API_VERSION})"
        )));
    }
    let k = Kind::from_kind(&kind).ok_or_else(|| err(format!("unknown kind {kind} in {GROUP}")))?;
    items.push(match k {
        Kind::AddressSpace => Item::AddressSpace(typed(value, k, at)?),
        Kind::RecipientPolicy => Item::RecipientPolicy(typed(value, k, at)?),
        Kind::MailContact => Item::MailContact(typed(value, k, at)?),
        Kind::SmtpConnector => Item::SmtpConnector(typed(value, k, at)?),
    });
    Ok(())
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Deserialises one object, refusing unknown fields as `kubectl apply`'s
/// strict field validation does, and naming the field of any error.
fn typed<T: DeserializeOwned>(value: Value, kind: Kind, at: Loc) -> Result<T, InputError> {
    let mut unknown = Vec::new();
    let mut note = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let de = serde_ignored::Deserializer::new(value, &mut note);
    let result = serde_path_to_error::deserialize(de);
    // Server-populated and list-only fields are fine; anything else is a typo.
    unknown.retain(|p| {
        p != "apiVersion"
            && p != "kind"
            && p != "status"
            && !p.starts_with("status.")
            && !p.starts_with("metadata.managedFields")
    });
    let typo = unknown.first().map(|p| format!("unknown field {p}"));
    match (result, typo) {
        (Ok(obj), None) => Ok(obj),
        (Ok(_), Some(typo)) => Err(at.err(format!("{kind}: {typo}"))),
        (Err(e), typo) => {
            let hint = typo.map(|t| format!(" ({t})")).unwrap_or_default();
            Err(at.err(format!("{kind}: {}: {}{hint}", e.path(), e.inner())))
        }
    }
}

/// Splits a YAML stream into documents, with the line each one starts on.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end();
        let is_marker = bare == "---" || bare.starts_with("--- ") || bare == "...";
        if is_marker {
            docs.push((start_line, &text[start_byte..offset]));
            start_byte = offset + line.len();
            start_line = i + 2;
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start_byte..]));
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_and_their_lines() {
        let text = "a: 1\n---\nb: 2\nc: 3\n--- \n...\nd: 4";
        let docs = split_documents(text);
        assert_eq!(
            docs,
            vec![(1, "a: 1\n"), (3, "b: 2\nc: 3\n"), (6, ""), (7, "d: 4")]
        );
    }
}
