//! Who a client is (SMTP AUTH: a ServiceAccount token or a password user
//! of a SendingGrant) and the limits kept per principal and per client.
//! The decisions are the routing core's (routing::grants); this moves the
//! bytes: reads password files, asks the API server about tokens, caches
//! both for a bounded time, and keeps the rate and failure windows.

mod passwords;
pub mod tokens;

use passwords::PasswordFiles;
use routing::grants::limits::{AuthFailures, RateWindow};
use routing::grants::sasl::Credentials;
use routing::grants::{Grants, Rights};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
pub use tokens::{ServiceAccountName, TokenReviewer};

/// Every limit of authentication, named and configurable.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// Where password Secrets are mounted: `<dir>/<secret>/htpasswd`.
    pub passwords_dir: PathBuf,
    /// How long a checked token or password is believed (a deleted
    /// ServiceAccount or changed password takes effect within it).
    pub cache_ttl: Duration,
    /// Failed AUTH attempts a client address may make per window.
    pub failure_limit: u32,
    pub failure_window: Duration,
    /// Each failed AUTH is answered after this long (slows guessing).
    pub failure_delay: Duration,
    /// Write the principal into the Received header (`(authenticated as …)`).
    pub record_principal: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            passwords_dir: PathBuf::from("/etc/mailroute/passwords"),
            cache_ttl: Duration::from_secs(60),
            failure_limit: 5,
            failure_window: Duration::from_secs(300),
            failure_delay: Duration::from_secs(1),
            record_principal: false,
        }
    }
}

/// How an AUTH ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    Granted(Rights),
    /// 535 5.7.8; the reason is logged, never told to the client.
    Invalid(&'static str),
    /// 454 4.7.0: the token could not be checked now.
    Temporary(String),
}

/// What was checked (a salted digest) → the answer, and until when it holds.
type Cache<V> = Mutex<HashMap<[u8; 32], (V, Instant)>>;

/// Most entries a cache keeps; past it the expired ones go, then all.
const MAX_ENTRIES: usize = 100_000;

pub struct Identity {
    pub settings: AuthSettings,
    passwords: PasswordFiles,
    tokens: Option<Arc<dyn TokenReviewer>>,
    /// Cache keys are SHA-256 over this per-process secret and what was
    /// checked: no token or password is kept in memory.
    salt: [u64; 2],
    tokens_seen: Cache<Option<ServiceAccountName>>,
    /// Credentials being checked now: sessions that bring the same token
    /// or password wait for that one check (one TokenReview per token per
    /// cache lifetime, however many sessions log in at once).
    checking: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
    passwords_seen: Cache<bool>,
    rates: Mutex<HashMap<String, RateWindow>>,
    failures: Mutex<HashMap<IpAddr, AuthFailures>>,
    epoch: Instant,
    /// TokenReview requests made (`mailroute_relay_token_reviews_total`;
    /// the benchmark's "one per principal per cache lifetime" is read off it).
    pub token_reviews: prometheus_client::metrics::counter::Counter,
}

impl Identity {
    pub fn new(
        settings: AuthSettings,
        tokens: Option<Arc<dyn TokenReviewer>>,
        token_reviews: prometheus_client::metrics::counter::Counter,
    ) -> Identity {
        let random = std::collections::hash_map::RandomState::new();
        Identity {
            passwords: PasswordFiles::new(settings.passwords_dir.clone()),
            settings,
            tokens,
            salt: [random.hash_one(1u8), random.hash_one(2u8)],
            tokens_seen: Mutex::new(HashMap::new()),
            checking: Mutex::new(HashMap::new()),
            passwords_seen: Mutex::new(HashMap::new()),
            rates: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            token_reviews,
        }
    }

    fn key(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt[0].to_le_bytes());
        h.update(self.salt[1].to_le_bytes());
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        h.finalize().into()
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Checks credentials against the grants in force: a token with the
    /// API server, a password against the grants' password Secrets.
    pub async fn authenticate(&self, creds: &Credentials, grants: &Grants) -> AuthOutcome {
        if tokens::looks_like_token(&creds.password) {
            return self.authenticate_token(&creds.password, grants).await;
        }
        for (secret, grant) in grants.password_secrets() {
            let Some(hash) = self.passwords.hash(secret, &creds.user) else {
                continue;
            };
            let key = self.key(&[
                b"password",
                secret.as_bytes(),
                creds.user.as_bytes(),
                hash.as_str().as_bytes(),
                creds.password.as_bytes(),
            ]);
            let password = creds.password.clone().into_bytes();
            // bcrypt and Argon2 take milliseconds on purpose: off the
            // session's thread, and once for sessions logging in at once.
            let ok = self
                .once(&self.passwords_seen, key, || async move {
                    Ok(tokio::task::spawn_blocking(move || hash.verify(&password))
                        .await
                        .unwrap_or(false))
                })
                .await
                .unwrap_or(false);
            if ok {
                return AuthOutcome::Granted(Rights::user(grant, secret, &creds.user));
            }
        }
        AuthOutcome::Invalid("unknown user or wrong password")
    }

    async fn authenticate_token(&self, token: &str, grants: &Grants) -> AuthOutcome {
        let Some(reviewer) = &self.tokens else {
            return AuthOutcome::Invalid(
                "a token, but this relay has no Kubernetes API to check it",
            );
        };
        let key = self.key(&[b"token", token.as_bytes()]);
        let account = match cached(&self.tokens_seen, &key) {
            Some(account) => account,
            None => match self
                .once(&self.tokens_seen, key, || async {
                    self.token_reviews.inc();
                    reviewer.review(token).await
                })
                .await
            {
                Ok(account) => account,
                Err(e) => return AuthOutcome::Temporary(e),
            },
        };
        let Some(sa) = account else {
            return AuthOutcome::Invalid(
                "token not valid (expired, another audience or cluster, or its ServiceAccount is gone)",
            );
        };
        match Rights::service_account(grants, &sa.namespace, &sa.name) {
            Some(rights) => AuthOutcome::Granted(rights),
            None => AuthOutcome::Invalid("no SendingGrant names this ServiceAccount"),
        }
    }

    /// `cache`'s answer for `key`, or `check`'s: one check per key at a
    /// time, however many sessions bring the same credentials at once (the
    /// first asks, the others wait and read its answer from the cache).
    async fn once<V, F>(
        &self,
        cache: &Cache<V>,
        key: [u8; 32],
        check: impl FnOnce() -> F,
    ) -> Result<V, String>
    where
        V: Clone,
        F: Future<Output = Result<V, String>>,
    {
        let gate = {
            let mut checking = self.checking.lock().expect("checking lock");
            checking.entry(key).or_default().clone()
        };
        let answer = {
            let _turn = gate.lock().await;
            match cached(cache, &key) {
                Some(v) => Ok(v),
                None => {
                    let answer = check().await;
                    if let Ok(v) = &answer {
                        remember(cache, key, v.clone(), self.settings.cache_ttl);
                    }
                    answer
                }
            }
        };
        let mut checking = self.checking.lock().expect("checking lock");
        // The last one out removes the gate (the map holds one reference).
        if Arc::strong_count(&gate) <= 2 {
            checking.remove(&key);
        }
        answer
    }

    /// Whether this client may try AUTH now.
    pub fn auth_blocked(&self, client: IpAddr) -> bool {
        let window = self.settings.failure_window.as_millis() as u64;
        let failures = self.failures.lock().expect("failures lock");
        failures
            .get(&client)
            .is_some_and(|f| f.blocked(self.now_ms(), self.settings.failure_limit, window))
    }

    pub fn auth_failed(&self, client: IpAddr) {
        let window = self.settings.failure_window.as_millis() as u64;
        let now = self.now_ms();
        let mut failures = self.failures.lock().expect("failures lock");
        if failures.len() >= MAX_ENTRIES {
            failures.retain(|_, f| !f.is_idle(now, window));
        }
        failures.entry(client).or_default().record(now, window);
    }

    /// Counts one message against the client's rate; false: over it.
    pub fn admit_message(&self, rights: &Rights) -> bool {
        let Some((key, per_minute)) = rights.rate() else {
            return true;
        };
        let now = self.now_ms();
        let mut rates = self.rates.lock().expect("rates lock");
        if rates.len() >= MAX_ENTRIES && !rates.contains_key(key) {
            rates.retain(|_, w| !w.is_idle(now));
        }
        match rates.get_mut(key) {
            Some(w) => w.admit(now, per_minute),
            None => {
                let mut w = RateWindow::default();
                let admitted = w.admit(now, per_minute);
                rates.insert(key.to_owned(), w);
                admitted
            }
        }
    }
}

fn cached<V: Clone>(cache: &Cache<V>, key: &[u8; 32]) -> Option<V> {
    let cache = cache.lock().expect("auth cache lock");
    match cache.get(key) {
        Some((v, until)) if Instant::now() < *until => Some(v.clone()),
        _ => None,
    }
}

fn remember<V>(cache: &Cache<V>, key: [u8; 32], v: V, ttl: Duration) {
    let now = Instant::now();
    let mut cache = cache.lock().expect("auth cache lock");
    if cache.len() >= MAX_ENTRIES {
        cache.retain(|_, (_, until)| now < *until);
        if cache.len() >= MAX_ENTRIES {
            cache.clear();
        }
    }
    cache.insert(key, (v, now + ttl));
}
