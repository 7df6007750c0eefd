//! YAML documents into typed objects, collecting every problem.

use crate::locate::{Segment, line_of, suggestion};
use crate::{InputError, InputErrors, Manifests, Source};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use routing::crd::{
    API_VERSION, AddressSpace, GROUP, Kind, MailContact, RecipientPolicy, SendingGrant,
    SmtpConnector,
};
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;
use std::path::Path;
use std::sync::Arc;

/// One YAML document: where it is and its text (errors are located in it).
#[derive(Clone, Copy)]
pub(crate) struct Doc<'a> {
    pub(crate) file: &'a Path,
    /// The file line the document starts on.
    pub(crate) line: usize,
    pub(crate) text: &'a str,
}

impl Doc<'_> {
    /// The file line of the field at `path` (of its parent when it is
    /// missing; the document's start when nothing of it is there).
    pub(crate) fn line_of(&self, path: &[Segment]) -> usize {
        match path {
            [] => self.line,
            _ => self.line + line_of(self.text, path).unwrap_or(1) - 1,
        }
    }

    fn err(&self, path: &[Segment], message: String) -> InputError {
        InputError {
            file: self.file.to_owned(),
            line: Some(self.line_of(path)),
            message,
        }
    }
}

#[derive(Default)]
pub(crate) struct Reader {
    out: Manifests,
    errors: Vec<InputError>,
    /// The file being read, shared by the sources of its objects.
    file: Option<(Arc<Path>, Arc<str>)>,
}

/// One object read from a document.
enum Item {
    AddressSpace(AddressSpace),
    RecipientPolicy(RecipientPolicy),
    MailContact(MailContact),
    SmtpConnector(SmtpConnector),
    SendingGrant(SendingGrant),
    /// An object of another kind, for the note on stderr.
    Skipped(String),
}

/// An item, and the path of its object inside the document (`items[3]` in a List).
type Located = (Item, Vec<Segment>);

/// Documents parsed per thread: YAML parsing dominates reading, and each
/// document parses on its own.
const PARSE_THREADS: usize = 2;

impl Reader {
    pub(crate) fn error(&mut self, e: InputError) {
        self.errors.push(e);
    }

    pub(crate) fn finish(mut self) -> Result<Manifests, InputErrors> {
        if self.errors.is_empty() {
            return Ok(self.out);
        }
        // Stable: problems of one file keep the order of the paths given.
        self.errors
            .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        self.errors.dedup();
        Err(InputErrors(self.errors))
    }

    pub(crate) fn file(&mut self, file: &Path, text: &str) {
        // One copy of the text, kept for locating fields of its objects later.
        let text: Arc<str> = text.into();
        self.file = Some((file.into(), text.clone()));
        let docs: Vec<Doc> = split_documents(&text)
            .into_iter()
            .map(|(line, text)| Doc { file, line, text })
            .collect();
        let parse = |chunk: &[Doc]| -> Vec<(Vec<Located>, Vec<InputError>)> {
            chunk.iter().map(|&d| parse_document(d)).collect()
        };
        // Results come back in document order, as they would without threads.
        let results = if docs.len() < 64 {
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
                    .collect::<Vec<_>>()
            })
        };
        for ((items, errors), doc) in results.into_iter().zip(&docs) {
            self.errors.extend(errors);
            for (item, at) in items {
                self.add(item, *doc, &at);
            }
        }
    }

    fn add(&mut self, item: Item, doc: Doc, at: &[Segment]) {
        let ns = |r: &mut Reader, kind, meta: &ObjectMeta| r.register(kind, meta, doc, at);
        match item {
            Item::AddressSpace(x) => {
                if let Some(ns) = ns(self, Kind::AddressSpace, &x.metadata) {
                    let objects = self.out.namespaces.entry(ns).or_default();
                    objects.address_spaces.push(x);
                }
            }
            Item::RecipientPolicy(x) => {
                if let Some(ns) = ns(self, Kind::RecipientPolicy, &x.metadata) {
                    self.out.namespaces.entry(ns).or_default().policies.push(x);
                }
            }
            Item::MailContact(x) => {
                if let Some(ns) = ns(self, Kind::MailContact, &x.metadata) {
                    self.out.namespaces.entry(ns).or_default().contacts.push(x);
                }
            }
            Item::SmtpConnector(x) => {
                if let Some(ns) = ns(self, Kind::SmtpConnector, &x.metadata) {
                    self.out
                        .namespaces
                        .entry(ns)
                        .or_default()
                        .connectors
                        .push(x);
                }
            }
            Item::SendingGrant(x) => {
                if let Some(ns) = ns(self, Kind::SendingGrant, &x.metadata) {
                    self.out.namespaces.entry(ns).or_default().grants.push(x);
                }
            }
            Item::Skipped(note) => self.out.skipped.push(note),
        }
    }

    /// Checks the name and that no object is defined twice; its namespace,
    /// or None (and an error) when it cannot be used.
    fn register(
        &mut self,
        kind: Kind,
        meta: &ObjectMeta,
        doc: Doc,
        at: &[Segment],
    ) -> Option<String> {
        let name = meta.name.clone().unwrap_or_default();
        let name_path = [at, &[Segment::key("metadata"), Segment::key("name")]].concat();
        if !is_dns_subdomain(&name) {
            self.errors.push(doc.err(&name_path, format!(
                "{kind}: metadata.name {name:?} is not a valid name (lower-case letters, digits, '-' and '.', at most 253)"
            )));
            return None;
        }
        let ns = meta.namespace.clone().unwrap_or_default();
        let key = (ns.clone(), kind, name.clone());
        if let Some(first) = self.out.sources.0.get(&key) {
            let first = first.locate(&[Segment::key("metadata"), Segment::key("name")]);
            let message = format!("{kind}/{name} is defined twice (first at {first})");
            self.errors.push(doc.err(&name_path, message));
            return None;
        }
        let (file, text) = self.file.clone().expect("objects come from a file");
        // The document is a slice of the file's text: its place in it.
        let start = doc.text.as_ptr() as usize - text.as_ptr() as usize;
        let source = Source {
            file,
            text,
            doc_line: doc.line,
            doc: start..start + doc.text.len(),
            at: at.to_vec(),
        };
        self.out.sources.0.insert(key, source);
        Some(ns)
    }
}

/// Parses one YAML document into the objects it holds and the problems found.
fn parse_document(doc: Doc) -> (Vec<Located>, Vec<InputError>) {
    let value: Value = match serde_yaml_ng::from_str(doc.text) {
        Ok(v) => v,
        Err(e) => {
            // The parser counts lines from the document's start; the error
            // is named by its file line, and any other place the message
            // names ("while parsing a block mapping at line 3") by its file
            // line too.
            let line = e.location().map_or(doc.line, |l| doc.line + l.line() - 1);
            let message = file_lines(&e.to_string(), doc.line, line);
            let error = InputError {
                file: doc.file.to_owned(),
                line: Some(line),
                message: format!("invalid YAML: {message}"),
            };
            return (Vec::new(), vec![error]);
        }
    };
    let (mut items, mut errors) = (Vec::new(), Vec::new());
    objects(value, doc, Vec::new(), &mut items, &mut errors);
    (items, errors)
}

fn objects(
    value: Value,
    doc: Doc,
    at: Vec<Segment>,
    items: &mut Vec<Located>,
    errors: &mut Vec<InputError>,
) {
    if value.is_null() {
        return;
    }
    let str_field = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
    let (Some(api_version), Some(kind)) = (str_field("apiVersion"), str_field("kind")) else {
        let message = "not a Kubernetes object: apiVersion and kind are required".into();
        errors.push(doc.err(&at, message));
        return;
    };
    let kind_path = [at.as_slice(), &[Segment::key("kind")]].concat();
    if kind == "List" || kind.ends_with("List") && api_version == "v1" {
        let Some(list) = value.get("items").and_then(Value::as_sequence).cloned() else {
            errors.push(doc.err(&kind_path, format!("{kind} without items")));
            return;
        };
        for (i, item) in list.into_iter().enumerate() {
            let item_at = [at.as_slice(), &[Segment::key("items"), Segment::Index(i)]].concat();
            objects(item, doc, item_at, items, errors);
        }
        return;
    }
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    if group != GROUP {
        items.push((Item::Skipped(format!("{api_version} {kind}/{name}")), at));
        return;
    }
    if api_version != API_VERSION {
        let path = [at.as_slice(), &[Segment::key("apiVersion")]].concat();
        let message =
            format!("unsupported apiVersion {api_version} (this build reads {API_VERSION})");
        errors.push(doc.err(&path, message));
        return;
    }
    let Some(k) = Kind::from_kind(&kind) else {
        errors.push(doc.err(&kind_path, format!("unknown kind {kind} in {GROUP}")));
        return;
    };
    let typed_item = match k {
        Kind::AddressSpace => typed(value, k, &name, doc, &at).map(Item::AddressSpace),
        Kind::RecipientPolicy => typed(value, k, &name, doc, &at).map(Item::RecipientPolicy),
        Kind::MailContact => typed(value, k, &name, doc, &at).map(Item::MailContact),
        Kind::SmtpConnector => typed(value, k, &name, doc, &at).map(Item::SmtpConnector),
        Kind::SendingGrant => typed(value, k, &name, doc, &at).map(Item::SendingGrant),
    };
    match typed_item {
        Ok(item) => items.push((item, at)),
        Err(e) => errors.extend(e),
    }
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
/// strict field validation does; each problem names its field and line.
fn typed<T: DeserializeOwned>(
    value: Value,
    kind: Kind,
    name: &str,
    doc: Doc,
    at: &[Segment],
) -> Result<T, Vec<InputError>> {
    let mut unknown: Vec<Vec<Segment>> = Vec::new();
    let mut note = |path: serde_ignored::Path<'_>| unknown.push(Segment::from_ignored(&path));
    let de = serde_ignored::Deserializer::new(value, &mut note);
    let result: Result<T, _> = serde_path_to_error::deserialize(de);
    let mut errors = Vec::new();
    for path in unknown {
        // Server-populated and list-only fields are fine; anything else is a typo.
        let first = path.first().and_then(Segment::as_key);
        let second = path.get(1).and_then(Segment::as_key);
        if matches!(first, Some("apiVersion" | "kind" | "status"))
            || (first == Some("metadata") && second == Some("managedFields"))
        {
            continue;
        }
        let hint = suggestion(kind, &path)
            .map(|s| format!(" (did you mean {s}?)"))
            .unwrap_or_default();
        let message = format!(
            "{kind}/{name}: unknown field {}{hint}",
            Segment::display(&path)
        );
        errors.push(doc.err(&[at, &path].concat(), message));
    }
    match result {
        Ok(obj) if errors.is_empty() => Ok(obj),
        Ok(_) => Err(errors),
        Err(e) => {
            let path = Segment::from_path_to_error(e.path());
            let message = format!("{kind}/{name}: {}: {}", e.path(), e.inner());
            errors.push(doc.err(&[at, &path].concat(), message));
            Err(errors)
        }
    }
}

/// A parser message with each ` at line N column M` counted from the file's
/// start: dropped where it is the error's own line (the message is prefixed
/// with it), ` (line N)` where it names another place.
fn file_lines(message: &str, doc_line: usize, error_line: usize) -> String {
    const AT: &str = " at line ";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(AT) {
        out.push_str(&rest[..i]);
        let after = &rest[i + AT.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(n) = after[..digits].parse::<usize>() else {
            out.push_str(AT);
            rest = after;
            continue;
        };
        let mut tail = &after[digits..];
        let mut column = "";
        if let Some(c) = tail.strip_prefix(" column ") {
            let len = c.bytes().take_while(u8::is_ascii_digit).count();
            column = &c[..len];
            tail = &c[len..];
        }
        let line = doc_line + n - 1;
        match (line == error_line, column.is_empty()) {
            (true, true) => {}
            (true, false) => out.push_str(&format!(" (column {column})")),
            (false, _) => out.push_str(&format!(" (line {line})")),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
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
