//! The limits a relay keeps per principal and per client, as pure state
//! advanced by the caller's clock (milliseconds): no I/O, no clock here.

/// Messages per minute over a sliding minute, estimated from two fixed
/// minutes (the previous one weighted by how much of it the sliding minute
/// still covers): constant memory, exact within the first minute, and
/// never more than the limit over any whole fixed minute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateWindow {
    minute: u64,
    current: u32,
    previous: u32,
}

const MINUTE_MS: u64 = 60_000;

impl RateWindow {
    /// Counts one message at `now_ms` if the limit allows it.
    pub fn admit(&mut self, now_ms: u64, per_minute: u32) -> bool {
        let minute = now_ms / MINUTE_MS;
        if minute != self.minute {
            self.previous = if minute == self.minute + 1 {
                self.current
            } else {
                0
            };
            self.current = 0;
            self.minute = minute;
        }
        let left_of_previous = MINUTE_MS - now_ms % MINUTE_MS;
        let estimate =
            u64::from(self.previous) * left_of_previous / MINUTE_MS + u64::from(self.current);
        if estimate >= u64::from(per_minute) {
            return false;
        }
        self.current += 1;
        true
    }

    /// Whether this window no longer remembers anything at `now_ms` (it
    /// can be forgotten).
    pub fn is_idle(&self, now_ms: u64) -> bool {
        now_ms / MINUTE_MS > self.minute + 1
    }
}

/// Failed AUTH attempts of one client address in a fixed window: past
/// the limit, the client is refused AUTH until the window ends (Postfix's
/// `smtpd_client_auth_rate_limit`, counting failures only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthFailures {
    window_start: u64,
    count: u32,
}

impl AuthFailures {
    pub fn record(&mut self, now_ms: u64, window_ms: u64) {
        if self.count == 0 || now_ms >= self.window_start + window_ms {
            self.window_start = now_ms;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
    }

    /// Whether another AUTH is refused at `now_ms`.
    pub fn blocked(&self, now_ms: u64, limit: u32, window_ms: u64) -> bool {
        now_ms < self.window_start + window_ms && self.count >= limit
    }

    pub fn is_idle(&self, now_ms: u64, window_ms: u64) -> bool {
        now_ms >= self.window_start + window_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_exact_in_the_first_minute_and_slides() {
        let mut w = RateWindow::default();
        let t0 = 10 * MINUTE_MS;
        assert!((0..100).all(|i| w.admit(t0 + i, 100)));
        assert!(!w.admit(t0 + 100, 100));
        // Half a minute into the next one, half of the last minute counts.
        assert!((0..50).all(|_| w.admit(t0 + MINUTE_MS + 30_000, 100)));
        assert!(!w.admit(t0 + MINUTE_MS + 30_000, 100));
        // Two minutes of silence forget everything.
        assert!(w.is_idle(t0 + 3 * MINUTE_MS));
        assert!((0..100).all(|_| w.admit(t0 + 3 * MINUTE_MS, 100)));
        assert!(!w.admit(t0 + 3 * MINUTE_MS + 1, 100));
    }

    #[test]
    fn rate_never_exceeds_the_limit_in_any_fixed_minute() {
        let mut w = RateWindow::default();
        let mut per_minute = std::collections::BTreeMap::new();
        for t in (0..10 * MINUTE_MS).step_by(97) {
            if w.admit(t, 7) {
                *per_minute.entry(t / MINUTE_MS).or_insert(0) += 1;
            }
        }
        assert!(per_minute.values().all(|&n| n <= 7), "{per_minute:?}");
        assert!(per_minute.values().sum::<u32>() >= 7 * 10 / 2);
    }

    #[test]
    fn auth_failures_block_until_the_window_ends() {
        let mut f = AuthFailures::default();
        let (limit, window) = (3, 60_000);
        for t in [1_000, 2_000] {
            f.record(t, window);
            assert!(!f.blocked(t, limit, window));
        }
        f.record(3_000, window);
        assert!(f.blocked(3_001, limit, window));
        assert!(f.blocked(60_999, limit, window));
        assert!(!f.blocked(61_000, limit, window));
        assert!(f.is_idle(61_000, window));
        f.record(61_000, window);
        assert!(!f.blocked(61_001, limit, window));
    }
}
