//! Recipient policy address templates (Exchange e-mail address policy syntax):
//! `%g` given name, `%s` surname, `%i` initials, `%m` alias, `%d` display name,
//! `%Ng` (any field) its first N characters, `%rXY` replace X by Y in the field
//! values that follow (X = Y deletes X), `%%` a percent sign. The domain after
//! the last `@` is literal. Characters not allowed in an address are dropped,
//! runs of dots collapse, and the result is lower-cased.

use crate::address::{Address, DomainError, MAX_LOCAL_PART, is_dot_string, normalize_domain};
use crate::crd::MailContactSpec;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    GivenName,
    Surname,
    Initials,
    Alias,
    DisplayName,
}

impl Field {
    fn from_letter(c: char) -> Option<Field> {
        Some(match c {
            'g' => Field::GivenName,
            's' => Field::Surname,
            'i' => Field::Initials,
            'm' => Field::Alias,
            'd' => Field::DisplayName,
            _ => return None,
        })
    }

    /// The MailContact field name, for messages.
    pub fn spec_name(self) -> &'static str {
        match self {
            Field::GivenName => "givenName",
            Field::Surname => "surname",
            Field::Initials => "initials",
            Field::Alias => "alias",
            Field::DisplayName => "displayName",
        }
    }

    fn value(self, c: &MailContactSpec) -> Option<&str> {
        let v = match self {
            Field::GivenName => c.given_name.as_deref(),
            Field::Surname => c.surname.as_deref(),
            Field::Initials => c.initials.as_deref(),
            Field::Alias => c.alias.as_deref(),
            Field::DisplayName => c.display_name.as_deref(),
        };
        v.map(str::trim).filter(|v| !v.is_empty())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(char),
    Field { field: Field, first: Option<usize> },
    Replace { from: char, to: char },
}

/// A parsed, valid template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    tokens: Vec<Token>,
    domain: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateError {
    NoAt,
    Domain(DomainError),
    DanglingPercent,
    UnknownField(char),
    ZeroLength,
    IncompleteReplace,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::NoAt => f.write_str("no @domain"),
            TemplateError::Domain(e) => write!(f, "domain: {e}"),
            TemplateError::DanglingPercent => f.write_str("% at the end of the local part"),
            TemplateError::UnknownField(c) => write!(f, "unknown placeholder %{c}"),
            TemplateError::ZeroLength => f.write_str("%0 takes no characters"),
            TemplateError::IncompleteReplace => f.write_str("%r needs two characters"),
        }
    }
}

/// What expanding a template for one contact gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expansion {
    Address(Address),
    /// The contact lacks these fields.
    Missing(Vec<Field>),
    /// The fields were there but left no valid local part.
    Unusable(String),
}

impl Template {
    pub fn parse(template: &str) -> Result<Template, TemplateError> {
        let (local, domain) = template.rsplit_once('@').ok_or(TemplateError::NoAt)?;
        if domain.contains('%') {
            return Err(TemplateError::Domain(DomainError::BadLabel(domain.into())));
        }
        let domain = normalize_domain(domain).map_err(TemplateError::Domain)?;
        if domain.starts_with('[') {
            return Err(TemplateError::Domain(DomainError::BadLabel(domain)));
        }
        let mut tokens = Vec::new();
        let mut chars = local.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                tokens.push(Token::Literal(c));
                continue;
            }
            let mut digits = String::new();
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                digits.push(d);
            }
            let letter = chars.next().ok_or(TemplateError::DanglingPercent)?;
            match letter {
                '%' if digits.is_empty() => tokens.push(Token::Literal('%')),
                'r' if digits.is_empty() => {
                    let from = chars.next().ok_or(TemplateError::IncompleteReplace)?;
                    let to = chars.next().ok_or(TemplateError::IncompleteReplace)?;
                    tokens.push(Token::Replace { from, to });
                }
                l => {
                    let field = Field::from_letter(l).ok_or(TemplateError::UnknownField(l))?;
                    let first = match digits.as_str() {
                        "" => None,
                        d => match d.parse::<usize>() {
                            Ok(0) | Err(_) => return Err(TemplateError::ZeroLength),
                            Ok(n) => Some(n),
                        },
                    };
                    tokens.push(Token::Field { field, first });
                }
            }
        }
        Ok(Template { tokens, domain })
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn expand(&self, contact: &MailContactSpec) -> Expansion {
        let mut missing = Vec::new();
        let mut local = LocalPart(String::with_capacity(32 + 1 + self.domain.len()));
        let mut replacements: Vec<(char, char)> = Vec::new();
        for token in &self.tokens {
            match token {
                Token::Literal(c) => local.push(*c),
                Token::Replace { from, to } => replacements.push((*from, *to)),
                Token::Field { field, first } => {
                    let Some(value) = field.value(contact) else {
                        if !missing.contains(field) {
                            missing.push(*field);
                        }
                        continue;
                    };
                    for c in value.chars().take(first.unwrap_or(usize::MAX)) {
                        match replacements.iter().rev().find(|(from, _)| *from == c) {
                            Some((from, to)) if from == to => {}
                            Some((_, to)) => local.push(*to),
                            None => local.push(c),
                        }
                    }
                }
            }
        }
        if !missing.is_empty() {
            return Expansion::Missing(missing);
        }
        let local = local.finish();
        if local.is_empty() || local.len() > MAX_LOCAL_PART || !is_dot_string(&local) {
            return Expansion::Unusable(format!("gives no valid local part ({local:?})"));
        }
        // The domain was normalised when the template was parsed; the buffer
        // was sized for it, so this appends in place.
        Expansion::Address(Address::from_local_buffer(local, &self.domain))
    }
}

/// A local part being cleaned as it is written: keeps ASCII letters, digits,
/// RFC 5322 specials and single dots (none leading or trailing), lower-cased.
struct LocalPart(String);

impl LocalPart {
    fn push(&mut self, c: char) {
        if c.is_ascii_alphanumeric() || (c.is_ascii() && crate::address::is_atext_special(c)) {
            self.0.push(c.to_ascii_lowercase());
        } else if c == '.' && !self.0.is_empty() && !self.0.ends_with('.') {
            self.0.push('.');
        }
    }

    fn finish(mut self) -> String {
        while self.0.ends_with('.') {
            self.0.pop();
        }
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact() -> MailContactSpec {
        MailContactSpec {
            target_address: Some("x@y.z".into()),
            given_name: Some("Ann-Marie".into()),
            surname: Some("O'Neil Smith".into()),
            initials: Some("AM".into()),
            alias: Some("amos".into()),
            display_name: Some("Ann-Marie O'Neil Smith".into()),
            ..Default::default()
        }
    }

    fn expand(t: &str) -> String {
        match Template::parse(t).unwrap().expand(&contact()) {
            Expansion::Address(a) => a.to_string(),
            other => panic!("{t}: {other:?}"),
        }
    }

    #[test]
    fn placeholders() {
        assert_eq!(
            expand("%g.%s@Example.com"),
            "ann-marie.o'neilsmith@example.com"
        );
        assert_eq!(expand("%m@example.com"), "amos@example.com");
        assert_eq!(expand("%i@example.com"), "am@example.com");
        assert_eq!(expand("%d@example.com"), "ann-marieo'neilsmith@example.com");
        assert_eq!(expand("%1g%s@example.com"), "ao'neilsmith@example.com");
        assert_eq!(expand("%3g.%2s@example.com"), "ann.o'@example.com");
        assert_eq!(expand("%%%m@example.com"), "%amos@example.com");
    }

    #[test]
    fn replace_applies_to_following_fields_and_deletes_when_equal() {
        assert_eq!(expand("%r-.%g@example.com"), "ann.marie@example.com");
        assert_eq!(
            expand("%g%r-.%g@example.com"),
            "ann-marieann.marie@example.com"
        );
        assert_eq!(expand("%r''%r _%s@example.com"), "oneil_smith@example.com");
        assert_eq!(expand("%r--%g@example.com"), "annmarie@example.com");
    }

    #[test]
    fn illegal_characters_dropped_and_dots_collapsed() {
        let mut c = contact();
        c.given_name = Some("José (Pepe)".into());
        c.surname = Some(".García.".into());
        let t = Template::parse("%g..%s@example.com").unwrap();
        assert_eq!(
            t.expand(&c),
            Expansion::Address(Address::parse("jospepe.garca@example.com").unwrap())
        );
    }

    #[test]
    fn missing_fields_are_reported() {
        let mut c = contact();
        c.given_name = None;
        c.initials = Some("  ".into());
        let t = Template::parse("%g.%i.%s@example.com").unwrap();
        assert_eq!(
            t.expand(&c),
            Expansion::Missing(vec![Field::GivenName, Field::Initials])
        );
        c.given_name = Some("<>".into());
        c.surname = Some("()".into());
        assert!(matches!(
            Template::parse("%g%s@x.org").unwrap().expand(&c),
            Expansion::Unusable(_)
        ));
    }

    #[test]
    fn parse_errors() {
        assert_eq!(Template::parse("%g"), Err(TemplateError::NoAt));
        assert_eq!(
            Template::parse("%g%@x.com"),
            Err(TemplateError::DanglingPercent)
        );
        assert_eq!(
            Template::parse("%q@x.com"),
            Err(TemplateError::UnknownField('q'))
        );
        assert_eq!(Template::parse("%0g@x.com"), Err(TemplateError::ZeroLength));
        assert_eq!(
            Template::parse("%r-@x.com"),
            Err(TemplateError::IncompleteReplace)
        );
        assert!(matches!(
            Template::parse("%g@%d.com"),
            Err(TemplateError::Domain(_))
        ));
        assert!(matches!(
            Template::parse("%g@*.x.com"),
            Err(TemplateError::Domain(_))
        ));
    }
}
