//! Domain patterns (`example.com`, `*.example.com`, `*`) and the index that
//! finds the most specific pattern for a domain in O(labels) hash lookups.

use crate::address::{DomainError, normalize_domain};
use hashbrown::HashMap;
use std::fmt;

/// A domain pattern. `Wildcard(s)` is `*.s`: every strict subdomain of `s` at
/// any depth, never `s` itself, matched on whole labels.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DomainPattern {
    Exact(String),
    Wildcard(String),
    Any,
}

impl DomainPattern {
    /// Parses and normalises (lower case, A-labels). `*` only when `allow_any`.
    pub fn parse(input: &str, allow_any: bool) -> Result<DomainPattern, DomainError> {
        if input == "*" {
            return if allow_any {
                Ok(DomainPattern::Any)
            } else {
                Err(DomainError::BadLabel("*".into()))
            };
        }
        if let Some(suffix) = input.strip_prefix("*.") {
            return plain(suffix).map(DomainPattern::Wildcard);
        }
        plain(input).map(DomainPattern::Exact)
    }

    pub fn matches(&self, domain: &str) -> bool {
        match self {
            DomainPattern::Exact(d) => d == domain,
            DomainPattern::Wildcard(s) => is_strict_subdomain(domain, s),
            DomainPattern::Any => true,
        }
    }

    /// A domain that this pattern matches and that stands for "any domain it
    /// matches" in lookups: for `*.s` it is `*.s` itself, which no exact
    /// entry can equal but every wildcard above it matches.
    pub fn representative(&self) -> String {
        match self {
            DomainPattern::Exact(d) => d.clone(),
            DomainPattern::Wildcard(s) => format!("*.{s}"),
            DomainPattern::Any => "*".to_owned(),
        }
    }

    /// Whether some domain matches both patterns; if so, a domain standing for
    /// the overlap (see [`DomainPattern::representative`]).
    pub fn overlap(&self, other: &DomainPattern) -> Option<String> {
        use DomainPattern::*;
        match (self, other) {
            (Any, p) | (p, Any) => Some(p.representative()),
            (Exact(a), p) | (p, Exact(a)) => p.matches(a).then(|| a.clone()),
            (Wildcard(a), Wildcard(b)) => {
                if a == b || is_strict_subdomain(a, b) {
                    Some(format!("*.{a}"))
                } else if is_strict_subdomain(b, a) {
                    Some(format!("*.{b}"))
                } else {
                    None
                }
            }
        }
    }
}

fn plain(domain: &str) -> Result<String, DomainError> {
    if domain.starts_with('[') || domain.contains('*') {
        return Err(DomainError::BadLabel(domain.to_owned()));
    }
    normalize_domain(domain)
}

/// `a.b.example.com` is a strict subdomain of `example.com`; `badexample.com` is not.
pub fn is_strict_subdomain(domain: &str, parent: &str) -> bool {
    domain.len() > parent.len() + 1
        && domain.ends_with(parent)
        && domain.as_bytes()[domain.len() - parent.len() - 1] == b'.'
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainPattern::Exact(d) => f.write_str(d),
            DomainPattern::Wildcard(s) => write!(f, "*.{s}"),
            DomainPattern::Any => f.write_str("*"),
        }
    }
}

/// Maps patterns to values; `lookup` returns the most specific match: exact,
/// then the longest wildcard, then `*`.
#[derive(Clone, Debug)]
pub struct SuffixIndex<T> {
    exact: HashMap<String, T>,
    wildcard: HashMap<String, T>,
    any: Option<T>,
}

impl<T> Default for SuffixIndex<T> {
    fn default() -> Self {
        SuffixIndex {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            any: None,
        }
    }
}

impl<T> SuffixIndex<T> {
    pub fn get(&self, pattern: &DomainPattern) -> Option<&T> {
        match pattern {
            DomainPattern::Exact(d) => self.exact.get(d),
            DomainPattern::Wildcard(s) => self.wildcard.get(s),
            DomainPattern::Any => self.any.as_ref(),
        }
    }

    pub fn get_mut(&mut self, pattern: &DomainPattern) -> Option<&mut T> {
        match pattern {
            DomainPattern::Exact(d) => self.exact.get_mut(d),
            DomainPattern::Wildcard(s) => self.wildcard.get_mut(s),
            DomainPattern::Any => self.any.as_mut(),
        }
    }

    pub fn insert(&mut self, pattern: &DomainPattern, value: T) {
        match pattern {
            DomainPattern::Exact(d) => {
                self.exact.insert(d.clone(), value);
            }
            DomainPattern::Wildcard(s) => {
                self.wildcard.insert(s.clone(), value);
            }
            DomainPattern::Any => self.any = Some(value),
        }
    }

    /// The value of the most specific pattern matching `domain`.
    pub fn lookup(&self, domain: &str) -> Option<&T> {
        if let Some(v) = self.exact.get(domain) {
            return Some(v);
        }
        if !self.wildcard.is_empty() {
            let mut rest = domain;
            while let Some(dot) = rest.find('.') {
                rest = &rest[dot + 1..];
                if let Some(v) = self.wildcard.get(rest) {
                    return Some(v);
                }
            }
        }
        self.any.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> DomainPattern {
        DomainPattern::parse(s, true).unwrap()
    }

    #[test]
    fn wildcard_matches_whole_labels_at_any_depth_but_not_apex() {
        let w = p("*.example.com");
        assert!(w.matches("a.example.com"));
        assert!(w.matches("a.b.example.com"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("badexample.com"));
        assert!(!w.matches("a.badexample.com"));
        assert!(p("*").matches("anything.org"));
        assert!(p("example.com").matches("example.com"));
        assert!(!p("example.com").matches("a.example.com"));
    }

    #[test]
    fn parse_normalises_and_refuses() {
        assert_eq!(
            p("*.EXAMPLE.com"),
            DomainPattern::Wildcard("example.com".into())
        );
        assert_eq!(
            p("Bücher.example"),
            DomainPattern::Exact("xn--bcher-kva.example".into())
        );
        assert!(DomainPattern::parse("*", false).is_err());
        for bad in [
            "*.*.com",
            "a.*.com",
            "*example.com",
            "",
            "*.",
            "[1.2.3.4]",
            "a..b",
        ] {
            assert!(DomainPattern::parse(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn lookup_prefers_exact_then_longest_wildcard_then_any() {
        let mut idx = SuffixIndex::default();
        idx.insert(&p("*"), "any");
        idx.insert(&p("*.corp.example"), "corp");
        idx.insert(&p("*.eu.corp.example"), "eu-wild");
        idx.insert(&p("eu.corp.example"), "eu");
        assert_eq!(idx.lookup("eu.corp.example"), Some(&"eu"));
        assert_eq!(idx.lookup("x.eu.corp.example"), Some(&"eu-wild"));
        assert_eq!(idx.lookup("us.corp.example"), Some(&"corp"));
        assert_eq!(idx.lookup("corp.example"), Some(&"any"));
        assert_eq!(idx.lookup("badcorp.example"), Some(&"any"));
        assert_eq!(idx.lookup("*.eu.corp.example"), Some(&"eu-wild"));
        assert_eq!(idx.lookup("*.corp.example"), Some(&"corp"));
    }

    #[test]
    fn overlap() {
        assert_eq!(p("a.com").overlap(&p("a.com")), Some("a.com".into()));
        assert_eq!(p("a.com").overlap(&p("b.com")), None);
        assert_eq!(p("x.a.com").overlap(&p("*.a.com")), Some("x.a.com".into()));
        assert_eq!(p("*.a.com").overlap(&p("a.com")), None);
        assert_eq!(
            p("*.a.com").overlap(&p("*.x.a.com")),
            Some("*.x.a.com".into())
        );
        assert_eq!(p("*.a.com").overlap(&p("*.b.com")), None);
        assert_eq!(p("*").overlap(&p("*.b.com")), Some("*.b.com".into()));
    }
}
