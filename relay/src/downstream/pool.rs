//! Idle next-hop connections kept for the next transaction to the same
//! next hop: a new TCP connection, greeting, EHLO and TLS handshake per
//! message is most of what a relay spends. A connection goes back only
//! after a transaction ended cleanly, and is dropped after
//! `--pool-idle-timeout` unused or `--pool-max-age` in all.

use super::open::Connection;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct PoolLimits {
    /// Idle connections kept per next hop; 0 turns reuse off.
    pub max_idle: usize,
    pub idle_timeout: Duration,
    pub max_age: Duration,
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            max_idle: 32,
            idle_timeout: Duration::from_secs(5),
            max_age: Duration::from_secs(300),
        }
    }
}

struct Idle {
    conn: Connection,
    since: Instant,
}

pub struct Pool {
    limits: PoolLimits,
    idle: Mutex<HashMap<String, Vec<Idle>>>,
}

impl Pool {
    pub fn new(limits: PoolLimits) -> Pool {
        Pool {
            limits,
            idle: Mutex::default(),
        }
    }

    fn fresh(&self, i: &Idle, now: Instant) -> bool {
        now.duration_since(i.since) < self.limits.idle_timeout
            && now.duration_since(i.conn.born) < self.limits.max_age
    }

    /// The most recently used idle connection to `key`, if any.
    pub fn take(&self, key: &str) -> Option<Connection> {
        let now = Instant::now();
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.get_mut(key)?;
        while let Some(i) = list.pop() {
            if self.fresh(&i, now) {
                return Some(i.conn);
            }
        }
        None
    }

    pub fn put(&self, key: String, conn: Connection) {
        if self.limits.max_idle == 0 || conn.born.elapsed() >= self.limits.max_age {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock().expect("pool lock");
        // Sweep while we hold the lock, so that stale sockets do not linger.
        idle.retain(|_, list| {
            list.retain(|i| self.fresh(i, now));
            !list.is_empty()
        });
        let list = idle.entry(key).or_default();
        if list.len() < self.limits.max_idle {
            list.push(Idle { conn, since: now });
        }
    }
}
