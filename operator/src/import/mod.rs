//! `mailroute import`: routing kept elsewhere (Postfix maps, …) turned into
//! the four kinds. Pure: each importer reads text and returns objects plus
//! what it could not express; [`write`] prints them.
//!
//! Nothing is dropped silently: an entry the kinds cannot say (a pipe to a
//! program, an alias with several targets, a regular-expression map) is a
//! [`Skipped`] naming its file and line, and the summary lists every one.

mod build;
pub mod csvde;
pub mod postfix;
mod postfix_unimported;
pub mod sendmail;
mod source;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use routing::crd::{
    AddressSpace, AddressSpaceSpec, AddressSpaceType, MailContact, MailContactSpec, SmtpConnector,
    SmtpConnectorSpec,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub use source::{Entry, Origin};

/// The annotation naming where an imported object came from (`file:line`).
pub const FROM_ANNOTATION: &str = "mailroute.io/imported-from";

/// What an import produced.
#[derive(Debug, Default)]
pub struct Imported {
    pub spaces: Vec<AddressSpace>,
    pub connectors: Vec<SmtpConnector>,
    pub contacts: Vec<MailContact>,
    pub skipped: Vec<Skipped>,
    /// What the reader should know besides (one line each).
    pub notes: Vec<String>,
}

/// An entry that was not imported, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Skipped {
    pub origin: Origin,
    pub entry: String,
    pub why: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.origin, self.entry, self.why)
    }
}

/// Object names: DNS-1123 labels made from what the source calls the
/// thing, unique per kind (`-2`, `-3`, … on a clash).
#[derive(Default)]
pub struct Names(BTreeSet<String>);

impl Names {
    pub fn claim(&mut self, raw: &str) -> String {
        let base = dns_label(raw);
        let mut name = base.clone();
        let mut n = 1;
        while !self.0.insert(name.clone()) {
            n += 1;
            let suffix = format!("-{n}");
            let keep = base.len().min(63 - suffix.len());
            name = format!("{}{suffix}", base[..keep].trim_end_matches('-'));
        }
        name
    }
}

/// Lower case, `[a-z0-9-]` only, no leading or trailing `-`, at most 63
/// characters; never empty.
pub fn dns_label(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars().flat_map(char::to_lowercase) {
        let folded = fold_latin(c);
        for c in folded.chars() {
            let c = if c.is_ascii_alphanumeric() { c } else { '-' };
            if c == '-' && (out.is_empty() || out.ends_with('-')) {
                continue;
            }
            out.push(c);
        }
    }
    out.truncate(63);
    let out = out.trim_end_matches('-').to_owned();
    if out.is_empty() { "x".into() } else { out }
}

/// Latin letters with diacritics as their plain letters (`zoë müller` →
/// `zoe muller`), so names stay readable.
fn fold_latin(c: char) -> std::borrow::Cow<'static, str> {
    let plain = match c {
        'à'..='å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è'..='ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
        'ì'..='ï' | 'ī' | 'į' | 'ı' => "i",
        'ł' | 'ľ' | 'ĺ' => "l",
        'ñ' | 'ń' | 'ň' => "n",
        'ò'..='ö' | 'ø' | 'ō' | 'ő' => "o",
        'œ' => "oe",
        'ř' | 'ŕ' => "r",
        'ß' => "ss",
        'ś' | 'š' | 'ş' => "s",
        'ť' | 'ţ' => "t",
        'ù'..='ü' | 'ū' | 'ů' | 'ű' | 'ų' => "u",
        'ý' | 'ÿ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        'þ' => "th",
        _ => return c.to_string().into(),
    };
    plain.into()
}

fn meta(name: String, namespace: Option<&str>, origin: &Origin) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: namespace.map(str::to_owned),
        annotations: Some(BTreeMap::from([(
            FROM_ANNOTATION.to_owned(),
            origin.to_string(),
        )])),
        ..ObjectMeta::default()
    }
}

pub fn space(
    name: String,
    ns: Option<&str>,
    origin: &Origin,
    domain: &str,
    kind: SpaceKind,
) -> AddressSpace {
    let (r#type, rewrite_to) = match kind {
        SpaceKind::Type(t) => (Some(t), None),
        SpaceKind::RewriteTo(to) => (None, Some(to)),
    };
    AddressSpace {
        metadata: meta(name, ns, origin),
        spec: AddressSpaceSpec {
            domain: domain.to_owned(),
            r#type,
            rewrite_to,
        },
        status: None,
    }
}

/// An AddressSpace is either a type or an alias domain.
pub enum SpaceKind {
    Type(AddressSpaceType),
    RewriteTo(String),
}

pub fn contact(
    name: String,
    ns: Option<&str>,
    origin: &Origin,
    addresses: Vec<String>,
    target: Option<String>,
) -> MailContact {
    MailContact {
        metadata: meta(name, ns, origin),
        spec: MailContactSpec {
            target_address: target,
            proxy_addresses: addresses,
            ..MailContactSpec::default()
        },
        status: None,
    }
}

pub fn connector(
    name: String,
    ns: Option<&str>,
    origin: &Origin,
    spec: SmtpConnectorSpec,
) -> SmtpConnector {
    SmtpConnector {
        metadata: meta(name, ns, origin),
        spec,
        status: None,
    }
}

impl Imported {
    /// The objects, as the compiler takes them.
    pub fn objects(&self) -> routing::Objects {
        routing::Objects {
            address_spaces: self.spaces.clone(),
            policies: Vec::new(),
            contacts: self.contacts.clone(),
            connectors: self.connectors.clone(),
            ..routing::Objects::default()
        }
    }

    /// Every object as YAML documents, spaces then connectors then
    /// contacts, each by name: the same input gives the same bytes.
    pub fn documents(&self) -> Vec<(String, String)> {
        fn docs<K: serde::Serialize + kube::Resource<DynamicType = ()>>(
            objects: &[K],
        ) -> Vec<(String, String)> {
            let mut out: Vec<(String, String)> = objects
                .iter()
                .map(|o| {
                    let mut v = serde_json::to_value(o).expect("objects serialise");
                    let m = v.as_object_mut().expect("an object");
                    m.insert("apiVersion".into(), K::api_version(&()).into());
                    m.insert("kind".into(), K::kind(&()).into());
                    m.remove("status");
                    let file = format!(
                        "{}-{}.yaml",
                        K::kind(&()).to_lowercase(),
                        o.meta().name.as_deref().unwrap_or_default()
                    );
                    (file, serde_yaml_ng::to_string(&v).expect("YAML"))
                })
                .collect();
            out.sort();
            out
        }
        let mut all = docs(&self.spaces);
        all.extend(docs(&self.connectors));
        all.extend(docs(&self.contacts));
        all
    }

    /// `N object(s): …` and one line per skipped entry.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "imported {} object(s): {} AddressSpace(s), {} SmtpConnector(s), {} MailContact(s); {} {} skipped",
            self.spaces.len() + self.connectors.len() + self.contacts.len(),
            self.spaces.len(),
            self.connectors.len(),
            self.contacts.len(),
            self.skipped.len(),
            if self.skipped.len() == 1 {
                "entry"
            } else {
                "entries"
            }
        );
        for n in &self.notes {
            out.push_str(&format!("\nnote: {n}"));
        }
        let mut skipped = self.skipped.clone();
        skipped.sort();
        for s in &skipped {
            out.push_str(&format!("\nskipped {s}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels_and_unique() {
        let mut names = Names::default();
        assert_eq!(
            names.claim("Ann.Smith@Example.COM"),
            "ann-smith-example-com"
        );
        assert_eq!(
            names.claim("ann smith@example.com"),
            "ann-smith-example-com-2"
        );
        assert_eq!(names.claim("--"), "x");
        assert_eq!(names.claim("Zoë Müller"), "zoe-muller");
        assert_eq!(names.claim("中文"), "x-2");
        let long = "a".repeat(80);
        assert_eq!(names.claim(&long).len(), 63);
        let again = names.claim(&long);
        assert_eq!((again.len(), again.ends_with("-2")), (63, true));
    }
}
