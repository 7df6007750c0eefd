//! Where a field is: the line of a path (`spec.addressSpaces[1].cost`) in a
//! YAML document, and the field a misspelt name most likely meant. Both run
//! only when there is a problem to report, so reading stays one parse.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray,
};
use marked_yaml::Node;
use routing::crd::Kind;

/// One step of a path into an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

impl Segment {
    pub(crate) fn key(k: &str) -> Segment {
        Segment::Key(k.to_owned())
    }

    pub(crate) fn as_key(&self) -> Option<&str> {
        match self {
            Segment::Key(k) => Some(k),
            Segment::Index(_) => None,
        }
    }

    pub(crate) fn from_ignored(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
        use serde_ignored::Path;
        match path {
            Path::Root => Vec::new(),
            Path::Seq { parent, index } => {
                let mut p = Segment::from_ignored(parent);
                p.push(Segment::Index(*index));
                p
            }
            Path::Map { parent, key } => {
                let mut p = Segment::from_ignored(parent);
                p.push(Segment::Key(key.clone()));
                p
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => Segment::from_ignored(parent),
        }
    }

    pub(crate) fn from_path_to_error(path: &serde_path_to_error::Path) -> Vec<Segment> {
        use serde_path_to_error::Segment as S;
        path.iter()
            .map_while(|s| match s {
                S::Seq { index } => Some(Some(Segment::Index(*index))),
                S::Map { key } => Some(Some(Segment::Key(key.clone()))),
                S::Enum { .. } => Some(None),
                S::Unknown => None,
            })
            .flatten()
            .collect()
    }

    /// The field path a message starts with (`spec.addressSpaces[1].cost
    /// "x": …`), if it starts with one under `spec`.
    pub(crate) fn parse_leading(message: &str) -> Option<Vec<Segment>> {
        let word = message.split([' ', ':']).next()?;
        if !word.starts_with("spec") {
            return None;
        }
        let mut out = Vec::new();
        for part in word.split('.') {
            let mut pieces = part.split('[');
            out.push(Segment::key(pieces.next()?));
            for index in pieces {
                out.push(Segment::Index(index.strip_suffix(']')?.parse().ok()?));
            }
        }
        Some(out)
    }

    /// `spec.addressSpaces[1].cost`, as kubectl names fields.
    pub(crate) fn display(path: &[Segment]) -> String {
        let mut out = String::new();
        for s in path {
            match s {
                Segment::Key(k) if out.is_empty() => out.push_str(k),
                Segment::Key(k) => {
                    out.push('.');
                    out.push_str(k);
                }
                Segment::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
}

/// The 1-based line, within `text`, of the deepest part of `path` that
/// exists (a missing field is reported where its parent is).
pub(crate) fn line_of(text: &str, path: &[Segment]) -> Option<usize> {
    let root = marked_yaml::parse_yaml(0, text).ok()?;
    let mut node = &root;
    let mut line = None;
    for segment in path {
        let found = match (segment, node) {
            (Segment::Key(k), Node::Mapping(m)) => m
                .get_key_value(k.as_str())
                .map(|(key, value)| (key.span(), value)),
            (Segment::Index(i), Node::Sequence(s)) => s.get(*i).map(|item| (item.span(), item)),
            _ => None,
        };
        let Some((span, next)) = found else { break };
        line = span.start().map(|m| m.line()).or(line);
        node = next;
    }
    line
}

/// The field of `kind` that the unknown last step of `path` most likely
/// meant, by the CRD's schema: same letters in another case, or at most two
/// edits away.
pub(crate) fn suggestion(kind: Kind, path: &[Segment]) -> Option<String> {
    let (Segment::Key(typo), parent) = path.split_last()? else {
        return None;
    };
    let crd = routing::crd::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind.as_str())?;
    let mut schema = crd
        .spec
        .versions
        .first()?
        .schema
        .clone()?
        .open_api_v3_schema?;
    for segment in parent {
        schema = step(schema, segment)?;
    }
    let known = schema.properties?;
    known
        .keys()
        .map(|k| {
            (
                strsim::levenshtein(&k.to_lowercase(), &typo.to_lowercase()),
                k,
            )
        })
        .filter(|(d, k)| *d <= 2.min(k.len() / 3 + 1))
        .min()
        .map(|(_, k)| k.clone())
}

fn step(schema: JSONSchemaProps, segment: &Segment) -> Option<JSONSchemaProps> {
    match segment {
        Segment::Key(k) => schema.properties?.remove(k),
        Segment::Index(_) => match schema.items? {
            JSONSchemaPropsOrArray::Schema(s) => Some(*s),
            JSONSchemaPropsOrArray::Schemas(mut v) => v.pop(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &[&str]) -> Vec<Segment> {
        p.iter()
            .map(|s| s.parse().map_or_else(|_| Segment::key(s), Segment::Index))
            .collect()
    }

    const DOC: &str = "apiVersion: mailroute.io/v1alpha1\nkind: SmtpConnector\nmetadata: {name: a}\nspec:\n  addressSpaces:\n  - domain: a.example\n  - domain: b.example\n    cots: 2\n  smartHosts: [\"[10.0.0.1]\"]\n";

    #[test]
    fn lines_of_fields_in_block_and_flow_style() {
        assert_eq!(
            line_of(DOC, &path(&["spec", "addressSpaces", "1", "cots"])),
            Some(8)
        );
        assert_eq!(line_of(DOC, &path(&["spec", "smartHosts", "0"])), Some(9));
        assert_eq!(line_of(DOC, &path(&["metadata", "name"])), Some(3));
        // A missing field: where its parent is.
        assert_eq!(line_of(DOC, &path(&["spec", "tls", "mode"])), Some(4));
        assert_eq!(line_of("- not a mapping", &path(&["spec"])), None);
    }

    #[test]
    fn suggestions_from_the_schema() {
        let s = |kind, p: &[&str]| suggestion(kind, &path(p));
        assert_eq!(
            s(Kind::SmtpConnector, &["spec", "addressSpaces", "1", "cots"]).as_deref(),
            Some("cost")
        );
        assert_eq!(
            s(Kind::MailContact, &["spec", "targetAdress"]).as_deref(),
            Some("targetAddress")
        );
        assert_eq!(
            s(Kind::MailContact, &["spec", "proxyaddresses"]).as_deref(),
            Some("proxyAddresses")
        );
        assert_eq!(s(Kind::AddressSpace, &["spec", "colour"]), None);
    }

    #[test]
    fn the_field_a_message_starts_with() {
        assert_eq!(
            Segment::parse_leading("spec.addressSpaces[1].domain \"x.\": trailing dot"),
            Some(path(&["spec", "addressSpaces", "1", "domain"]))
        );
        assert_eq!(
            Segment::parse_leading("spec.smartHosts[0]: bad"),
            Some(path(&["spec", "smartHosts", "0"]))
        );
        assert_eq!(Segment::parse_leading("spec: x"), Some(path(&["spec"])));
        assert_eq!(Segment::parse_leading("no field here"), None);
        assert_eq!(Segment::parse_leading("spec.a[x]"), None);
    }

    #[test]
    fn paths_read_as_kubectl_names_them() {
        assert_eq!(
            Segment::display(&path(&["spec", "addressSpaces", "1", "cost"])),
            "spec.addressSpaces[1].cost"
        );
    }
}
