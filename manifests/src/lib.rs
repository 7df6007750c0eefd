//! Reading mailroute manifests from files and directories (for `mailroute`
//! and `mailroute-relay --manifests`): multi-document YAML, `kind: List`,
//! the four mailroute kinds. Every problem in every file is reported, each
//! with its file and the line of the field it is about.

mod locate;
mod reader;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use locate::Segment;
use routing::Objects;
use routing::crd::Kind;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One problem with the input itself.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Every problem found, in file and line order (exit code 2 in the CLI).
#[derive(Debug)]
pub struct InputErrors(pub Vec<InputError>);

impl fmt::Display for InputErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InputErrors {}

/// A request the manifests cannot answer: a namespace that holds nothing,
/// several namespaces where one is needed, or no mailroute object at all.
#[derive(Debug)]
pub struct SelectError(pub String);

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SelectError {}

/// The objects read, by namespace (`""` for objects that name none).
#[derive(Default)]
pub struct Manifests {
    pub namespaces: BTreeMap<String, Objects>,
    /// Objects of other kinds that were skipped, for a note on stderr.
    pub skipped: Vec<String>,
    /// The paths given, for messages.
    pub paths: Vec<PathBuf>,
    /// Where each object was defined.
    pub sources: Sources,
}

/// Where each object was defined, by (namespace, kind, name): so that a
/// problem found later, when the objects are compiled, can name its file and
/// line as the reader's own errors do.
#[derive(Default)]
pub struct Sources(HashMap<(String, Kind, String), Source>);

/// One object's document: its file, the file's text, and where the object
/// is in it.
pub(crate) struct Source {
    pub(crate) file: Arc<Path>,
    pub(crate) text: Arc<str>,
    pub(crate) doc_line: usize,
    pub(crate) doc: Range<usize>,
    /// The object's path inside its document (`items[3]` in a List).
    pub(crate) at: Vec<Segment>,
}

impl Source {
    /// `file:line` of a field of the object (of its nearest parent there).
    pub(crate) fn locate(&self, field: &[Segment]) -> String {
        let doc = reader::Doc {
            file: &self.file,
            line: self.doc_line,
            text: &self.text[self.doc.clone()],
        };
        let line = doc.line_of(&[self.at.as_slice(), field].concat());
        format!("{}:{line}", self.file.display())
    }
}

impl Sources {
    /// `file:line` of the field a compile problem's message starts with
    /// (`spec.proxyAddresses[1] "…": …`), or of the object when it starts
    /// with none. Objects that name no namespace are looked up too, as
    /// `--namespace` puts them in the one chosen.
    pub fn locate(&self, ns: &str, kind: Kind, name: &str, message: &str) -> Option<String> {
        let source = [ns, ""]
            .iter()
            .find_map(|n| self.0.get(&(n.to_string(), kind, name.to_owned())))?;
        let field = Segment::parse_leading(message)
            .unwrap_or_else(|| vec![Segment::key("metadata"), Segment::key("name")]);
        Some(source.locate(&field))
    }
}

impl Manifests {
    /// The namespaces to work on. With `wanted`, that namespace's objects
    /// together with those that name no namespace (`kubectl apply -n` puts
    /// them there); without, every namespace. Holding nothing is an error:
    /// a misspelt namespace or a wrong path must not pass as "all is well".
    pub fn select(
        mut self,
        wanted: Option<&str>,
    ) -> Result<BTreeMap<String, Objects>, SelectError> {
        if self.namespaces.values().all(is_empty) {
            return Err(SelectError(format!(
                "no mailroute.io objects in {}",
                self.paths_display()
            )));
        }
        let Some(ns) = wanted else {
            return Ok(self.namespaces);
        };
        let named = self.namespaces.remove(ns).filter(|o| !is_empty(o));
        let unnamed = self.namespaces.remove("").filter(|o| !is_empty(o));
        let objects = match (named, unnamed) {
            (None, None) => {
                return Err(SelectError(format!(
                    "no mailroute.io objects in namespace {ns:?} (namespaces in {}: {})",
                    self.paths_display(),
                    self.namespace_list()
                )));
            }
            (Some(o), None) | (None, Some(o)) => o,
            (Some(named), Some(unnamed)) => merge(ns, named, unnamed)?,
        };
        Ok(BTreeMap::from([(ns.to_owned(), objects)]))
    }

    /// The one namespace to work on: `wanted`, or the only one there is.
    pub fn single(self, wanted: Option<&str>) -> Result<(String, Objects), SelectError> {
        let mut selected = self.select(wanted)?;
        if selected.len() > 1 {
            let names: Vec<String> = selected.keys().map(|n| display_ns(n)).collect();
            return Err(SelectError(format!(
                "the manifests hold objects of several namespaces ({}): choose one with --namespace",
                names.join(", ")
            )));
        }
        Ok(selected
            .pop_first()
            .expect("select never returns an empty map"))
    }

    fn paths_display(&self) -> String {
        let paths: Vec<String> = self.paths.iter().map(|p| p.display().to_string()).collect();
        paths.join(", ")
    }

    fn namespace_list(&self) -> String {
        let names: Vec<String> = self
            .namespaces
            .iter()
            .filter(|(_, o)| !is_empty(o))
            .map(|(n, _)| display_ns(n))
            .collect();
        names.join(", ")
    }
}

fn is_empty(o: &Objects) -> bool {
    o.address_spaces.is_empty()
        && o.policies.is_empty()
        && o.contacts.is_empty()
        && o.connectors.is_empty()
        && o.grants.is_empty()
}

/// Objects of namespace `ns` and objects that name none, as `kubectl apply
/// -n ns` would put them together; the same kind and name twice is an error.
fn merge(ns: &str, mut named: Objects, unnamed: Objects) -> Result<Objects, SelectError> {
    if let Some((kind, name)) = keys(&named).intersection(&keys(&unnamed)).next() {
        return Err(SelectError(format!(
            "{kind}/{name} is defined both in namespace {ns:?} and without a namespace (which --namespace {ns} puts there too)"
        )));
    }
    named.address_spaces.extend(unnamed.address_spaces);
    named.policies.extend(unnamed.policies);
    named.contacts.extend(unnamed.contacts);
    named.connectors.extend(unnamed.connectors);
    named.grants.extend(unnamed.grants);
    Ok(named)
}

fn keys(o: &Objects) -> BTreeSet<(Kind, String)> {
    let key = |kind, m: &ObjectMeta| (kind, m.name.clone().unwrap_or_default());
    let spaces = o
        .address_spaces
        .iter()
        .map(|x| key(Kind::AddressSpace, &x.metadata));
    let policies = o
        .policies
        .iter()
        .map(|x| key(Kind::RecipientPolicy, &x.metadata));
    let contacts = o
        .contacts
        .iter()
        .map(|x| key(Kind::MailContact, &x.metadata));
    let connectors = o
        .connectors
        .iter()
        .map(|x| key(Kind::SmtpConnector, &x.metadata));
    let grants = o
        .grants
        .iter()
        .map(|x| key(Kind::SendingGrant, &x.metadata));
    spaces
        .chain(policies)
        .chain(contacts)
        .chain(connectors)
        .chain(grants)
        .collect()
}

pub fn display_ns(ns: &str) -> String {
    if ns.is_empty() {
        "(none)".into()
    } else {
        ns.to_owned()
    }
}

/// Reads every path: a file, or every `*.yaml` / `*.yml` directly in a
/// directory. Reads on after a problem, so that all of them are reported.
pub fn read(paths: &[PathBuf]) -> Result<Manifests, InputErrors> {
    let mut reader = reader::Reader::default();
    for p in paths {
        match files_of(p) {
            Ok(files) => {
                for f in files {
                    match std::fs::read_to_string(&f) {
                        Ok(text) => reader.file(&f, &text),
                        Err(e) => reader.error(io_error(&f, e)),
                    }
                }
            }
            Err(e) => reader.error(e),
        }
    }
    let mut m = reader.finish()?;
    m.paths = paths.to_vec();
    Ok(m)
}

fn files_of(p: &Path) -> Result<Vec<PathBuf>, InputError> {
    if !p.is_dir() {
        return Ok(vec![p.to_owned()]);
    }
    let entries = std::fs::read_dir(p).map_err(|e| io_error(p, e))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|f| {
            f.is_file() && matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    found.sort();
    Ok(found)
}

fn io_error(path: &Path, e: std::io::Error) -> InputError {
    InputError {
        file: path.to_owned(),
        line: None,
        message: e.to_string(),
    }
}
