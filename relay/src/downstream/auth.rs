//! AUTH credentials for smart hosts, read from files as a mounted Secret
//! gives them: `<auth dir>/<secret name>/username` and `.../password`.
//! They are read at each new connection, so a rotated Secret applies
//! without a restart.

use mail_send::Credentials;
use std::path::Path;

pub fn credentials(dir: &Path, secret: &str) -> Result<Credentials<String>, String> {
    // The CRD restricts names to DNS subdomains; refuse anything that could
    // leave the directory all the same.
    let safe = !secret.is_empty()
        && !secret.starts_with('.')
        && secret
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !safe {
        return Err(format!("invalid Secret name {secret:?}"));
    }
    let read = |key: &str| {
        let path = dir.join(secret).join(key);
        std::fs::read_to_string(&path)
            .map(|s| {
                s.strip_suffix('\n')
                    .map(|s| s.strip_suffix('\r').unwrap_or(s))
                    .unwrap_or(&s)
                    .to_owned()
            })
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    Ok(Credentials::new(read("username")?, read("password")?))
}
