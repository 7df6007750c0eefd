//! Password users: a Secret's `htpasswd` key in the format of Apache's
//! `htpasswd -B` (`user:hash` per line), with bcrypt (`$2a$`, `$2b$`,
//! `$2y$`) or Argon2 (`$argon2id$`, PHC string) hashes. Only hashes are
//! stored; verification is constant-time in the hash crates.

use std::fmt;

/// The Secret key holding the users.
pub const HTPASSWD_KEY: &str = "htpasswd";
/// The Secret type the operator watches (`kubectl create secret generic
/// NAME --type=mailroute.io/htpasswd --from-file=htpasswd=FILE`).
pub const SECRET_TYPE: &str = "mailroute.io/htpasswd";

/// A password hash in a format we verify.
#[derive(Clone, PartialEq, Eq)]
pub enum Hash {
    Bcrypt(String),
    Argon2(String),
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash is not a password, but there is no reason to print it.
        match self {
            Hash::Bcrypt(_) => f.write_str("Hash::Bcrypt(..)"),
            Hash::Argon2(_) => f.write_str("Hash::Argon2(..)"),
        }
    }
}

impl Hash {
    pub fn parse(text: &str) -> Result<Hash, String> {
        if ["$2a$", "$2b$", "$2y$"].iter().any(|p| text.starts_with(p)) {
            // $2b$NN$ + 22 characters of salt + 31 of hash.
            let cost = text.get(4..6).and_then(|c| c.parse::<u32>().ok());
            let ok = text.len() == 60
                && text.as_bytes()[6] == b'$'
                && cost.is_some_and(|c| (4..=31).contains(&c))
                && text[7..]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/');
            return if ok {
                Ok(Hash::Bcrypt(text.to_owned()))
            } else {
                Err("a malformed bcrypt hash".into())
            };
        }
        if text.starts_with("$argon2") {
            return match argon2::PasswordHash::new(text) {
                Ok(h) if h.hash.is_some() => Ok(Hash::Argon2(text.to_owned())),
                _ => Err("a malformed Argon2 hash".into()),
            };
        }
        Err("not a bcrypt ($2b$…) or Argon2 ($argon2id$…) hash".into())
    }

    pub fn as_str(&self) -> &str {
        match self {
            Hash::Bcrypt(h) | Hash::Argon2(h) => h,
        }
    }

    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Hash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Hash::Argon2(h) => {
                use argon2::PasswordVerifier;
                match argon2::PasswordHash::new(h) {
                    Ok(parsed) => argon2::Argon2::default()
                        .verify_password(password, &parsed)
                        .is_ok(),
                    Err(_) => false,
                }
            }
        }
    }
}

/// One `htpasswd` line for `user` with a new bcrypt hash of `password`
/// (a random salt: not deterministic, by design).
pub fn htpasswd_line(user: &str, password: &str, cost: u32) -> Result<String, String> {
    if user.is_empty() || user.contains([':', '\n', '\r']) {
        return Err(format!(
            "{user:?}: a user name is not empty and has no ':' or line break"
        ));
    }
    let hash = bcrypt::hash(password, cost).map_err(|e| e.to_string())?;
    Ok(format!("{user}:{hash}"))
}

/// A parsed `htpasswd` text: the users whose lines parse, and what is
/// wrong with the others (by line number, never quoting the hash).
#[derive(Clone, Debug, Default)]
pub struct Htpasswd {
    pub users: Vec<(String, Hash)>,
    pub errors: Vec<String>,
}

impl Htpasswd {
    pub fn parse(text: &str) -> Htpasswd {
        let mut out = Htpasswd::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let n = i + 1;
            let Some((user, hash)) = line.split_once(':') else {
                out.errors.push(format!("line {n}: not user:hash"));
                continue;
            };
            if user.is_empty() {
                out.errors.push(format!("line {n}: empty user name"));
                continue;
            }
            if out.users.iter().any(|(u, _)| u == user) {
                out.errors.push(format!(
                    "line {n}: user {user:?} is listed twice; the first wins"
                ));
                continue;
            }
            match Hash::parse(hash.trim()) {
                Ok(h) => out.users.push((user.to_owned(), h)),
                Err(e) => out.errors.push(format!("line {n} (user {user:?}): {e}")),
            }
        }
        out
    }

    pub fn get(&self, user: &str) -> Option<&Hash> {
        self.users.iter().find(|(u, _)| u == user).map(|(_, h)| h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_and_argon2_verify() {
        let b = bcrypt::hash("s3cret", 4).unwrap();
        let h = Hash::parse(&b).unwrap();
        assert!(h.verify(b"s3cret"));
        assert!(!h.verify(b"s3cret "));
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::from_b64("c2FsdHNhbHRzYWx0").unwrap();
        let a = argon2::Argon2::default()
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        let h = Hash::parse(&a).unwrap();
        assert!(h.verify(b"pw"));
        assert!(!h.verify(b"Pw"));
    }

    #[test]
    fn malformed_lines_are_named_and_the_rest_kept() {
        let good = bcrypt::hash("x", 4).unwrap();
        let text = format!(
            "# users\nalice:{good}\nbob:{{SHA}}abc\ncarol\n:{good}\nalice:{good}\ndave:$2b$04$short\n"
        );
        let h = Htpasswd::parse(&text);
        assert_eq!(h.users.len(), 1);
        assert!(h.get("alice").unwrap().verify(b"x"));
        assert_eq!(
            h.errors,
            [
                "line 3 (user \"bob\"): not a bcrypt ($2b$…) or Argon2 ($argon2id$…) hash",
                "line 4: not user:hash",
                "line 5: empty user name",
                "line 6: user \"alice\" is listed twice; the first wins",
                "line 7 (user \"dave\"): a malformed bcrypt hash",
            ]
        );
    }
}
