//! Reading Postfix-style text: `main.cf` parameters and lookup-table
//! sources (what `postmap` reads), each entry with its file and line.

use std::collections::BTreeMap;
use std::fmt;

/// Where an entry was read: `file:line`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Line 0: not from a line (a default, or derived from an entry).
        match self.line {
            0 => write!(f, "{}", self.file),
            n => write!(f, "{}:{n}", self.file),
        }
    }
}

/// One `key value` entry of a lookup table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Lower-cased, as `postmap` stores keys by default.
    pub key: String,
    pub value: String,
    pub origin: Origin,
}

/// Logical lines: a line that starts with white space continues the one
/// before; empty lines and lines whose first non-blank character is `#`
/// are comments (postconf(5), postmap(1)). Yields (first line number, text).
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t'])
            && let Some((_, last)) = out.last_mut()
        {
            last.push(' ');
            last.push_str(trimmed.trim_end());
            continue;
        }
        out.push((i + 1, line.trim_end().to_owned()));
    }
    out
}

/// A lookup-table source: `key whitespace value` per logical line.
pub fn parse_table(file: &str, text: &str) -> (Vec<Entry>, Vec<super::Skipped>) {
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    for (line, text) in logical_lines(text) {
        let origin = Origin {
            file: file.to_owned(),
            line,
        };
        let mut parts = text.trim().splitn(2, [' ', '\t']);
        let key = parts.next().unwrap_or_default();
        let value = parts.next().unwrap_or_default().trim();
        if value.is_empty() {
            skipped.push(super::Skipped {
                origin,
                entry: text.trim().to_owned(),
                why: "a key without a value".into(),
            });
            continue;
        }
        entries.push(Entry {
            key: key.to_lowercase(),
            value: value.to_owned(),
            origin,
        });
    }
    (entries, skipped)
}

/// `main.cf`: `name = value` parameters, with where each was set.
#[derive(Debug, Default)]
pub struct MainCf {
    params: BTreeMap<String, (String, Origin)>,
}

impl MainCf {
    pub fn parse(file: &str, text: &str) -> Result<MainCf, String> {
        let mut params = BTreeMap::new();
        for (line, text) in logical_lines(text) {
            let Some((name, value)) = text.split_once('=') else {
                return Err(format!("{file}:{line}: not `name = value`: {text}"));
            };
            let origin = Origin {
                file: file.to_owned(),
                line,
            };
            params.insert(name.trim().to_owned(), (value.trim().to_owned(), origin));
        }
        Ok(MainCf { params })
    }

    /// The parameter with `$name`, `${name}` and `$(name)` expanded from
    /// this file (unset parameters expand to `defaults`, else nothing).
    pub fn get(&self, name: &str, defaults: &[(&str, &str)]) -> Option<(String, Origin)> {
        let (value, origin) = self.get_raw(name, defaults)?;
        Some((self.expand(&value, defaults, 0, &mut false), origin))
    }

    /// The parameter as written (or its default), nothing expanded.
    pub fn get_raw(&self, name: &str, defaults: &[(&str, &str)]) -> Option<(String, Origin)> {
        match self.params.get(name) {
            Some((v, o)) => Some((v.clone(), o.clone())),
            None => {
                let (_, v) = defaults.iter().find(|(n, _)| *n == name)?;
                let origin = Origin {
                    file: "(Postfix default)".into(),
                    line: 0,
                };
                Some((v.to_string(), origin))
            }
        }
    }

    /// `value` expanded, or None when it names a parameter that neither
    /// main.cf nor `defaults` sets (`$myhostname` is the machine's name,
    /// which the file does not say).
    pub fn expand_known(&self, value: &str, defaults: &[(&str, &str)]) -> Option<String> {
        let mut unknown = false;
        let out = self.expand(value, defaults, 0, &mut unknown);
        (!unknown).then_some(out)
    }

    fn expand(
        &self,
        value: &str,
        defaults: &[(&str, &str)],
        depth: usize,
        unknown: &mut bool,
    ) -> String {
        if depth > 20 || !value.contains('$') {
            return value.to_owned();
        }
        let mut out = String::new();
        let mut rest = value;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let (name, next) = match after.chars().next() {
                Some(open @ ('{' | '(')) => {
                    let close = if open == '{' { '}' } else { ')' };
                    match after.find(close) {
                        Some(j) => (&after[1..j], &after[j + 1..]),
                        None => (after, ""),
                    }
                }
                _ => {
                    let end = after
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            let inner = match self.params.get(name) {
                Some((v, _)) => Some(v.as_str()),
                None => defaults.iter().find(|(n, _)| *n == name).map(|(_, v)| *v),
            };
            match inner {
                Some(v) => out.push_str(&self.expand(v, defaults, depth + 1, unknown)),
                None => *unknown = true,
            }
            rest = next;
        }
        out.push_str(rest);
        out
    }
}

/// A Postfix list: items separated by white space and commas.
pub fn list(value: &str) -> Vec<String> {
    value
        .split([' ', '\t', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_comments_and_crlf() {
        let (entries, skipped) = parse_table(
            "virtual",
            "# aliases\r\nAnn@Example.com  ann@mbx1.example.com,\r\n   copy@example.org\r\n\r\nlonely\r\n",
        );
        assert_eq!(
            entries,
            vec![Entry {
                key: "ann@example.com".into(),
                value: "ann@mbx1.example.com, copy@example.org".into(),
                origin: Origin {
                    file: "virtual".into(),
                    line: 2
                },
            }]
        );
        assert_eq!(
            skipped[0].to_string(),
            "virtual:5: lonely: a key without a value"
        );
    }

    #[test]
    fn main_cf_expands_parameters() {
        let cf = MainCf::parse(
            "main.cf",
            "mydomain = example.com\nrelay_domains = $mydomain,\n  ${mydomain}.net other.org\nbroken = $(mydomain)x\n",
        )
        .unwrap();
        let (v, origin) = cf.get("relay_domains", &[]).unwrap();
        assert_eq!(v, "example.com, example.com.net other.org");
        assert_eq!(origin.to_string(), "main.cf:2");
        assert_eq!(cf.get("broken", &[]).unwrap().0, "example.comx");
        assert_eq!(
            cf.expand_known("localhost.$mydomain", &[]).as_deref(),
            Some("localhost.example.com")
        );
        assert_eq!(cf.expand_known("$myhostname", &[]), None);
        assert_eq!(
            cf.get(
                "virtual_alias_domains",
                &[("virtual_alias_domains", "$mydomain")]
            )
            .unwrap()
            .0,
            "example.com"
        );
        assert!(MainCf::parse("main.cf", "no equals sign").is_err());
        assert_eq!(
            list("a.com, b.com\tc.com,,d.com"),
            ["a.com", "b.com", "c.com", "d.com"]
        );
    }
}
