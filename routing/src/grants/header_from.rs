//! The addresses of a message's `From` header (RFC 5322 §3.6.2: a
//! mailbox-list), for checking them against a grant's senders. Display
//! names, comments and groups are taken apart; anything that is not a
//! list of valid addresses is an error (and refused where it matters).

use crate::address::Address;

/// The longest `From` field (unfolded) that is looked at.
pub const MAX_FIELD: usize = 8192;

/// The addresses in a `From` field's value (unfolded, without `From:`).
pub fn addresses(value: &str) -> Result<Vec<Address>, String> {
    let text = without_comments(value)?;
    let mut out = Vec::new();
    for part in split_top_level(&text)? {
        let mut part = part.trim();
        // A group: `name: a, b;` — the name goes, the members stay.
        if let Some((name, rest)) = split_group(part) {
            let _ = name;
            part = rest.trim();
        }
        let part = part.trim_end_matches(';').trim();
        if part.is_empty() {
            continue;
        }
        let spec = match (part.rfind('<'), part.ends_with('>')) {
            (Some(open), true) => &part[open + 1..part.len() - 1],
            (None, false) => part,
            _ => return Err(format!("{part:?} is not a mailbox")),
        };
        let addr = Address::parse(spec.trim()).map_err(|e| format!("{spec:?}: {e}"))?;
        out.push(addr);
    }
    if out.is_empty() {
        return Err("no address".into());
    }
    Ok(out)
}

/// `display-name ":"` at the start of a group, outside quotes.
fn split_group(part: &str) -> Option<(&str, &str)> {
    let mut quoted = false;
    for (i, c) in part.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => return None,
            ':' if !quoted => return Some((&part[..i], &part[i + 1..])),
            _ => {}
        }
    }
    None
}

/// Commas separate mailboxes, except inside quotes and angle brackets.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted || angle {
        return Err("unbalanced quotes or angle brackets".into());
    }
    parts.push(&text[start..]);
    Ok(parts)
}

/// The text without `(comments)` (nested; quoted strings kept as they are).
fn without_comments(value: &str) -> Result<String, String> {
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' if quoted || depth > 0 => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    if depth > 0 || quoted {
        return Err("unbalanced comment or quotes".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &str) -> Result<Vec<String>, String> {
        addresses(v).map(|a| a.iter().map(|a| a.key()).collect())
    }

    #[test]
    fn mailbox_lists() {
        let ok = [
            ("noreply@example.com", vec!["noreply@example.com"]),
            (" App <NoReply@Example.COM>", vec!["noreply@example.com"]),
            (
                "\"Doe, Jane\" <jane@example.com>, bob@example.org",
                vec!["jane@example.com", "bob@example.org"],
            ),
            (
                "jane@example.com (Jane, from accounts)",
                vec!["jane@example.com"],
            ),
            ("\"a <b@evil.net>\" <a@example.com>", vec!["a@example.com"]),
            (
                "Team: a@example.com, b@example.com;",
                vec!["a@example.com", "b@example.com"],
            ),
            (
                "=?utf-8?q?J=C3=B6rg?= <jorg@example.com>",
                vec!["jorg@example.com"],
            ),
        ];
        for (v, want) in ok {
            assert_eq!(keys(v).unwrap(), want, "{v}");
        }
        for bad in [
            "",
            "  ",
            "Jane",
            "<jane@example.com",
            "\"x <a@b.c>",
            "a@b.c (x",
            "Undisclosed:;",
            "a@",
            "x <a@b.c> y",
        ] {
            assert!(keys(bad).is_err(), "{bad}: {:?}", keys(bad));
        }
    }
}
