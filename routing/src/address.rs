//! Recipient addresses and domain names: parsing and the canonical forms
//! used as lookup keys (RFC 5321 §4.1.2, SMTPUTF8, IDNA).

use std::borrow::Cow;
use std::fmt;

/// RFC 5321 §4.5.3.1 limits.
pub const MAX_LOCAL_PART: usize = 64;
pub const MAX_DOMAIN: usize = 255;
pub const MAX_PATH: usize = 256;

/// A parsed mailbox. The local part keeps the sender's spelling (it is
/// forwarded unchanged); the domain is canonical: lower case, A-labels.
/// Stored as one `local@domain` string: one allocation per address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    text: String,
    at: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressError {
    Empty,
    NoAt,
    TooLong,
    BadLocalPart,
    /// An unquoted local part with a dot at either end or two in a row.
    LocalPartDot,
    BadDomain(DomainError),
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressError::Empty => f.write_str("empty address"),
            AddressError::NoAt => f.write_str("no @ in address"),
            AddressError::TooLong => f.write_str("address too long"),
            AddressError::BadLocalPart => f.write_str("invalid local part"),
            AddressError::LocalPartDot => f.write_str(
                "invalid local part: a dot at its start or end, or two in a row (quote it to keep it)",
            ),
            AddressError::BadDomain(e) => write!(f, "invalid domain: {e}"),
        }
    }
}

impl Address {
    /// Parses `local@domain`, with or without angle brackets. The local part
    /// may be a dot-string or a quoted string; a quoted string whose content
    /// is a valid dot-string is unquoted (RFC 5321 §4.1.2 recommends it).
    pub fn parse(input: &str) -> Result<Address, AddressError> {
        let s = input
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .unwrap_or(input);
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        if s.len() > MAX_PATH {
            return Err(AddressError::TooLong);
        }
        let at = s.rfind('@').ok_or(AddressError::NoAt)?;
        let (local, domain) = (&s[..at], &s[at + 1..]);
        let local = canonical_local_part(local)?;
        let domain = canonical_domain(domain).map_err(AddressError::BadDomain)?;
        Ok(Address::from_parts(&local, &domain))
    }

    /// An address from parts already known to be valid.
    pub(crate) fn from_parts(local: &str, domain: &str) -> Address {
        let mut text = String::with_capacity(local.len() + 1 + domain.len());
        text.push_str(local);
        text.push('@');
        text.push_str(domain);
        Address {
            text,
            at: local.len(),
        }
    }

    /// The same local part in another (canonical) domain: an alias rewrite.
    pub fn with_domain(&self, domain: &str) -> Address {
        Address::from_parts(self.local(), domain)
    }

    pub fn local(&self) -> &str {
        &self.text[..self.at]
    }

    pub fn domain(&self) -> &str {
        &self.text[self.at + 1..]
    }

    /// The lookup key: local part lower-cased, `@`, canonical domain.
    pub fn key(&self) -> String {
        if self.text.is_ascii() {
            return self.text.to_ascii_lowercase();
        }
        let mut key = self.local().to_lowercase();
        key.push('@');
        key.push_str(self.domain());
        key
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The lookup key, reusing this address's allocation when it can.
    pub fn into_key(mut self) -> String {
        if self.text.is_ascii() {
            self.text.make_ascii_lowercase();
            return self.text;
        }
        self.key()
    }

    /// `local@domain` appended in place to a buffer holding a valid local
    /// part, with a canonical domain: no new allocation when it has room.
    pub(crate) fn from_local_buffer(mut text: String, domain: &str) -> Address {
        let at = text.len();
        text.push('@');
        text.push_str(domain);
        Address { text, at }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// RFC 5322 atext, plus any non-ASCII character (RFC 6531 SMTPUTF8).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || is_atext_special(c) || !c.is_ascii()
}

/// RFC 5322 atext specials.
pub(crate) fn is_atext_special(c: char) -> bool {
    matches!(
        c,
        '!' | '#'
            | '$'
            | '%'
            | '&'
            | '\''
            | '*'
            | '+'
            | '-'
            | '/'
            | '='
            | '?'
            | '^'
            | '_'
            | '`'
            | '{'
            | '|'
            | '}'
            | '~'
    )
}

pub(crate) fn is_dot_string(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

fn canonical_local_part(local: &str) -> Result<Cow<'_, str>, AddressError> {
    if local.is_empty() || local.len() > MAX_LOCAL_PART {
        return Err(AddressError::BadLocalPart);
    }
    if is_dot_string(local) {
        return Ok(local.into());
    }
    // Only the dots are wrong (`ann.`, `a..b`): say so.
    let dots_only_fault = |s: &str| is_dot_string(&s.replace('.', ""));
    let inner = local
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .ok_or_else(|| {
            if dots_only_fault(local) {
                AddressError::LocalPartDot
            } else {
                AddressError::BadLocalPart
            }
        })?;
    // qcontent: printable ASCII except `"` and `\`, or quoted-pair; UTF-8 allowed.
    let mut content = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(q) if (' '..='~').contains(&q) => content.push(q),
                _ => return Err(AddressError::BadLocalPart),
            },
            '"' => return Err(AddressError::BadLocalPart),
            c if (' '..='~').contains(&c) || !c.is_ascii() => content.push(c),
            _ => return Err(AddressError::BadLocalPart),
        }
    }
    if content.is_empty() {
        return Err(AddressError::BadLocalPart);
    }
    if is_dot_string(&content) {
        return Ok(content.into());
    }
    Ok(local.into())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainError {
    Empty,
    TooLong,
    BadLabel(String),
    /// `example.com.`: the root's dot, which mail domains are written without.
    TrailingDot,
    /// `.example.com`, `example..com`.
    EmptyLabel,
    Idna,
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainError::Empty => f.write_str("empty domain"),
            DomainError::TooLong => f.write_str("domain longer than 253 characters"),
            DomainError::BadLabel(l) => write!(f, "invalid label {l:?}"),
            DomainError::TrailingDot => {
                f.write_str("trailing dot (mail domains are written without it)")
            }
            DomainError::EmptyLabel => {
                f.write_str("empty label (a leading dot or two dots in a row)")
            }
            DomainError::Idna => f.write_str("not a valid internationalised domain name"),
        }
    }
}

/// Canonical form of a domain name: lower case, Unicode labels converted to
/// A-labels (UTS 46), each label 1–63 letters, digits, hyphens (not at either
/// end) or underscores. Address literals (`[192.0.2.1]`) are kept as written:
/// no AddressSpace can match them, so only a `*` connector routes them.
pub fn normalize_domain(domain: &str) -> Result<String, DomainError> {
    canonical_domain(domain).map(Cow::into_owned)
}

/// [`normalize_domain`] without a copy when the domain is already canonical
/// (the common case on the hot path).
fn canonical_domain(domain: &str) -> Result<Cow<'_, str>, DomainError> {
    if domain.is_empty() {
        return Err(DomainError::Empty);
    }
    if domain.starts_with('[') {
        return normalize_address_literal(domain).map(Cow::Owned);
    }
    let ascii: Cow<'_, str> = if !domain.is_ascii() {
        idna::domain_to_ascii(domain)
            .map_err(|_| DomainError::Idna)?
            .into()
    } else if domain.bytes().any(|b| b.is_ascii_uppercase()) {
        domain.to_ascii_lowercase().into()
    } else {
        domain.into()
    };
    check_ldh(&ascii)?;
    Ok(ascii)
}

fn check_ldh(domain: &str) -> Result<(), DomainError> {
    if domain.is_empty() {
        return Err(DomainError::Empty);
    }
    if domain.len() > 253 {
        return Err(DomainError::TooLong);
    }
    let labels = domain.split('.').count();
    for (i, label) in domain.split('.').enumerate() {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            return Err(match label.is_empty() {
                true if i + 1 == labels && i > 0 => DomainError::TrailingDot,
                true => DomainError::EmptyLabel,
                false => DomainError::BadLabel(label.to_owned()),
            });
        }
    }
    Ok(())
}

fn normalize_address_literal(literal: &str) -> Result<String, DomainError> {
    let inner = literal
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .ok_or_else(|| DomainError::BadLabel(literal.to_owned()))?;
    let ok = match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => {
            inner[5..].parse::<std::net::Ipv6Addr>().is_ok()
        }
        _ => inner.parse::<std::net::Ipv4Addr>().is_ok(),
    };
    if !ok {
        return Err(DomainError::BadLabel(literal.to_owned()));
    }
    Ok(literal.to_ascii_lowercase().replace("[ipv6:", "[IPv6:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_canonicalises() {
        let a = Address::parse("<Ann.Smith@Example.COM>").unwrap();
        assert_eq!(a.local(), "Ann.Smith");
        assert_eq!(a.domain(), "example.com");
        assert_eq!(a.key(), "ann.smith@example.com");
        assert_eq!(a.to_string(), "Ann.Smith@example.com");
    }

    #[test]
    fn unquotes_quoted_dot_strings_only() {
        assert_eq!(Address::parse("\"ann\"@x.org").unwrap().local(), "ann");
        assert_eq!(
            Address::parse("\"ann smith\"@x.org").unwrap().local(),
            "\"ann smith\""
        );
        assert!(Address::parse("\"ann\"x\"@x.org").is_err());
    }

    #[test]
    fn idna_domains_become_a_labels() {
        let a = Address::parse("jürgen@Bücher.example").unwrap();
        assert_eq!(a.domain(), "xn--bcher-kva.example");
        assert_eq!(a.key(), "jürgen@xn--bcher-kva.example");
        assert_eq!(
            Address::parse("JÜRGEN@xn--bcher-kva.example")
                .unwrap()
                .key(),
            "jürgen@xn--bcher-kva.example"
        );
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "<>",
            "ann",
            "@example.com",
            "ann@",
            "ann..smith@example.com",
            ".ann@example.com",
            "ann@exa mple.com",
            "ann@-example.com",
            "ann@example..com",
            "ann@example.com.",
            "a b@example.com",
            "ann@[300.1.1.1]",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert_eq!(Address::parse(&long_local), Err(AddressError::BadLocalPart));
        let long_path = format!("a@{}.com", "b".repeat(260));
        assert_eq!(Address::parse(&long_path), Err(AddressError::TooLong));
    }

    #[test]
    fn dots_in_the_wrong_place_are_named() {
        let message = |a: &str| Address::parse(a).unwrap_err().to_string();
        assert_eq!(
            message("ann@example.com."),
            "invalid domain: trailing dot (mail domains are written without it)"
        );
        for empty in ["ann@example..com", "ann@.example.com", "ann@a..b."] {
            assert_eq!(
                message(empty),
                "invalid domain: empty label (a leading dot or two dots in a row)",
                "{empty}"
            );
        }
        for dots in ["ann.@example.com", ".ann@example.com", "a..b@example.com"] {
            assert_eq!(
                Address::parse(dots),
                Err(AddressError::LocalPartDot),
                "{dots}"
            );
        }
        assert_eq!(
            Address::parse("a b@example.com"),
            Err(AddressError::BadLocalPart)
        );
        assert_eq!(normalize_domain("."), Err(DomainError::EmptyLabel));
        assert_eq!(
            normalize_domain("example.org."),
            Err(DomainError::TrailingDot)
        );
    }

    #[test]
    fn address_literals() {
        assert_eq!(
            Address::parse("a@[192.0.2.1]").unwrap().domain(),
            "[192.0.2.1]"
        );
        assert_eq!(
            Address::parse("a@[ipv6:2001:DB8::1]").unwrap().domain(),
            "[IPv6:2001:db8::1]"
        );
    }
}
