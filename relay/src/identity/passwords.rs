//! Password users of SendingGrants: each grant's Secret mounted as
//! `<dir>/<secret>/htpasswd` (the chart mounts the Secrets it is told
//! of). The file is read again whenever it changes, so a rotated Secret
//! applies as soon as the kubelet updates the volume.

use routing::grants::password::{HTPASSWD_KEY, Hash, Htpasswd};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// A file's modification time when read, and what it held.
type Read = (Option<SystemTime>, Arc<Htpasswd>);

pub struct PasswordFiles {
    dir: PathBuf,
    /// By Secret name: the file's modification time and what it held.
    loaded: Mutex<HashMap<String, Read>>,
}

impl PasswordFiles {
    pub fn new(dir: PathBuf) -> PasswordFiles {
        PasswordFiles {
            dir,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The hash of `user` in `secret`'s file, if both exist.
    pub fn hash(&self, secret: &str, user: &str) -> Option<Hash> {
        self.users(secret)?.get(user).cloned()
    }

    fn users(&self, secret: &str) -> Option<Arc<Htpasswd>> {
        // Secret names are DNS subdomains; nothing else may leave the directory.
        let safe = !secret.is_empty()
            && !secret.starts_with('.')
            && secret
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !safe {
            return None;
        }
        let path = self.dir.join(secret).join(HTPASSWD_KEY);
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        {
            let loaded = self.loaded.lock().expect("password files lock");
            if let Some((seen, users)) = loaded.get(secret)
                && *seen == modified
                && modified.is_some()
            {
                return Some(users.clone());
            }
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(secret, path = %path.display(), error = %e, "password Secret not readable");
                return None;
            }
        };
        let users = Htpasswd::parse(&text);
        for e in &users.errors {
            tracing::warn!(secret, problem = %e, "password Secret line ignored");
        }
        let users = Arc::new(users);
        self.loaded
            .lock()
            .expect("password files lock")
            .insert(secret.to_owned(), (modified, users.clone()));
        Some(users)
    }
}
