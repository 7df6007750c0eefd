//! Changes to one namespace, taken together: a namespace is let through
//! once its changes have been quiet for `quiet` (a `kubectl apply` of
//! 10,000 objects compiles once, not 10,000 times), but never later than
//! `max_delay` after its first pending change, so a namespace that changes
//! all the time (a sync job writing every second) is still published.

use futures::{Stream, StreamExt};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The namespaces of `changes`, coalesced.
pub fn coalesce(
    changes: impl Stream<Item = String> + Send + 'static,
    quiet: Duration,
    max_delay: Duration,
) -> impl Stream<Item = String> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut changes = Box::pin(changes);
        // Namespace → (first pending change, last change).
        let mut pending: HashMap<String, (Instant, Instant)> = HashMap::new();
        loop {
            let due = |&(first, last): &(Instant, Instant)| (last + quiet).min(first + max_delay);
            let next = pending.values().map(due).min();
            let wake = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                change = changes.next() => match change {
                    Some(ns) => {
                        let now = Instant::now();
                        pending.entry(ns).and_modify(|(_, last)| *last = now).or_insert((now, now));
                    }
                    None => {
                        for ns in pending.into_keys() {
                            let _ = tx.send(ns);
                        }
                        return;
                    }
                },
                () = wake => {
                    let now = Instant::now();
                    let ready: Vec<String> = pending
                        .iter()
                        .filter(|(_, times)| due(times) <= now)
                        .map(|(ns, _)| ns.clone())
                        .collect();
                    for ns in ready {
                        pending.remove(&ns);
                        if tx.send(ns).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(2);

    /// Sends `ticks` × `per_tick` changes to "mail", a tick every `every`;
    /// the times (from the start) at which "mail" came through within `watch`.
    async fn through(
        ticks: usize,
        per_tick: usize,
        every: Duration,
        watch: Duration,
    ) -> Vec<Duration> {
        let (tx, rx) = mpsc::unbounded_channel::<String>();
        let mut rx = rx;
        let changes = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let mut out = Box::pin(coalesce(changes, QUIET, MAX));
        let start = Instant::now();
        tokio::spawn(async move {
            for _ in 0..ticks {
                for _ in 0..per_tick {
                    tx.send("mail".into()).unwrap();
                }
                tokio::time::sleep(every).await;
            }
            std::future::pending::<()>().await;
        });
        let mut seen = Vec::new();
        while let Ok(Some(_)) = tokio::time::timeout_at(start + watch, out.next()).await {
            seen.push(start.elapsed());
        }
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_comes_through_once_after_the_quiet_time() {
        // 10,000 changes within a second.
        let seen = through(100, 100, Duration::from_millis(10), Duration::from_secs(10)).await;
        assert_eq!(seen.len(), 1, "{seen:?}");
        // The last change is at 0.99 s.
        assert!(seen[0] >= Duration::from_millis(990) + QUIET, "{seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_namespace_that_never_stops_changing_still_comes_through_every_max_delay() {
        // A change every 250 ms for 10 s: the quiet time never comes.
        let seen = through(40, 1, Duration::from_millis(250), Duration::from_secs(10)).await;
        assert!((4..=6).contains(&seen.len()), "{seen:?}");
        for pair in seen.windows(2) {
            assert!(
                pair[1] - pair[0] <= MAX + Duration::from_millis(260),
                "{seen:?}"
            );
        }
    }
}
