//! Whether the relays serve the published table: the `Propagated`
//! condition of a RoutingTable, from the relays' own reports and the relay
//! pods the operator sees. Pure: the operator reads both from its caches.

use crate::crd::RelayReport;
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

/// A relay pod that serves this namespace's table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayPod {
    pub namespace: String,
    pub name: String,
    pub ready: bool,
    /// When it last became Ready (its Ready condition's transition time).
    pub ready_since: Option<Timestamp>,
}

/// When the generation was published, now, and how long a Ready relay pod
/// may take to report it before its silence is read as "cannot report"
/// rather than "behind": a relay reports only when what it serves changes,
/// so an old report is all the operator sees of a relay that loaded the
/// table but cannot write (RBAC cut, API unreachable from its node).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub published_at: Timestamp,
    pub now: Timestamp,
    pub deadline: Duration,
}

/// The verdict: the condition, the `serving/ready` column, and the reports
/// of pods that are gone (the operator removes them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Propagation {
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
    /// `serving/ready`, e.g. `2/3`.
    pub serving: String,
    /// `(namespace, pod)` of reports whose pod no longer exists.
    pub gone: Vec<(String, String)>,
    /// When a pod now counted as behind passes the deadline, and the
    /// verdict may turn Unknown: assess again after this long.
    pub recheck_after: Option<Duration>,
}

pub const ALL_SERVING: &str = "AllRelaysServing";
pub const BEHIND: &str = "RelaysBehind";
pub const NOT_REPORTING: &str = "RelaysNotReporting";
pub const NO_RELAYS: &str = "NoReadyRelays";
pub const NOT_PUBLISHED: &str = "NotPublished";

/// At most this many pods are named in a message; the rest are counted.
const NAMED: usize = 10;

/// Compares what each Ready relay pod reports with `generation`. Without
/// pod knowledge (`pods` None: relays outside the cluster, or the operator
/// not told where they run) every report counts as a Ready relay.
///
/// A pod is *behind* when it reports an older generation and either says
/// it refused the newer one or is still within the deadline (counted from
/// the publication, or from when the pod became Ready if later); past the
/// deadline its old report proves nothing, and the pod is *not reporting*,
/// as is a Ready pod that never reported. Behind pods make the verdict
/// False; otherwise pods not reporting make it Unknown.
pub fn assess(
    generation: Option<&str>,
    relay_namespace_default: &str,
    reports: &[RelayReport],
    pods: Option<&[RelayPod]>,
    timing: &Timing,
) -> Propagation {
    let key = |r: &RelayReport| {
        let ns = r
            .pod_namespace
            .as_deref()
            .unwrap_or(relay_namespace_default);
        (ns.to_owned(), r.pod.clone())
    };
    let gone: Vec<(String, String)> = match pods {
        None => Vec::new(),
        Some(pods) => {
            let mut gone: Vec<_> = reports
                .iter()
                .map(key)
                .filter(|(ns, pod)| !pods.iter().any(|p| &p.namespace == ns && &p.name == pod))
                .collect();
            gone.sort();
            gone
        }
    };
    // (namespace, name, ready since)
    let mut ready: Vec<(String, String, Option<Timestamp>)> = match pods {
        None => reports
            .iter()
            .map(|r| {
                let (ns, pod) = key(r);
                (ns, pod, None)
            })
            .collect(),
        Some(pods) => pods
            .iter()
            .filter(|p| p.ready)
            .map(|p| (p.namespace.clone(), p.name.clone(), p.ready_since))
            .collect(),
    };
    ready.sort();
    ready.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);

    let Some(generation) = generation else {
        return Propagation {
            status: "Unknown",
            reason: NOT_PUBLISHED,
            message: "no table is published yet".into(),
            serving: format!("0/{}", ready.len()),
            gone,
            recheck_after: None,
        };
    };
    let short = short(generation);
    let mut serving = 0;
    let mut behind = Vec::new();
    let mut silent = Vec::new();
    let mut recheck_after: Option<Duration> = None;
    for (ns, name, ready_since) in &ready {
        let report = reports
            .iter()
            .find(|r| key(r) == (ns.clone(), name.clone()));
        let Some(r) = report else {
            silent.push(format!("{name} (no report)"));
            continue;
        };
        if r.generation.as_deref() == Some(generation) {
            serving += 1;
            continue;
        }
        let since = ready_since.map_or(timing.published_at, |t| t.max(timing.published_at));
        // A clock that went back counts as no time waited.
        let waited = Duration::try_from(timing.now.duration_since(since)).unwrap_or_default();
        if r.refused.is_some() || waited < timing.deadline {
            behind.push(describe_behind(name, r));
            if r.refused.is_none() {
                let left = timing.deadline - waited;
                recheck_after = Some(recheck_after.map_or(left, |d| d.min(left)));
            }
        } else {
            silent.push(format!("{name} (last report: {})", serves(r)));
        }
    }
    let counted = format!("{serving}/{}", ready.len());
    let not_reporting = || {
        format!(
            "{} Ready relay pod(s) have not reported serving generation {short} within {} s \
             (each may serve it and be unable to report: see its log): {}",
            silent.len(),
            timing.deadline.as_secs(),
            name_some(&silent)
        )
    };
    let (status, reason, message) = if !behind.is_empty() {
        let mut message = format!(
            "{} of {} Ready relay pod(s) do not serve generation {short}: {}",
            behind.len(),
            ready.len(),
            name_some(&behind)
        );
        if !silent.is_empty() {
            message.push_str("; ");
            message.push_str(&not_reporting());
        }
        ("False", BEHIND, message)
    } else if !silent.is_empty() {
        ("Unknown", NOT_REPORTING, not_reporting())
    } else if ready.is_empty() {
        let message = "no Ready relay pod serves this namespace".to_owned();
        ("Unknown", NO_RELAYS, message)
    } else {
        let message = format!("{serving} of {serving} Ready relay pod(s) serve generation {short}");
        ("True", ALL_SERVING, message)
    };
    Propagation {
        status,
        reason,
        message,
        serving: counted,
        gone,
        recheck_after,
    }
}

/// The field manager a relay pod writes its own entry of `status.relays`
/// as (server-side apply keeps each pod's entry its own).
pub fn relay_field_manager(pod: &str) -> String {
    // Field managers are at most 128 characters; pod names rarely pass 63.
    format!("mailroute-relay-{pod}").chars().take(128).collect()
}

/// The first 12 hex digits of a generation, after any `sha256:` prefix.
pub fn short(generation: &str) -> String {
    let hex = generation.rsplit(':').next().unwrap_or(generation);
    hex.chars().take(12).collect()
}

fn serves(r: &RelayReport) -> String {
    match &r.generation {
        Some(g) => format!("serves {}", short(g)),
        None => "serves no table".to_owned(),
    }
}

fn describe_behind(pod: &str, r: &RelayReport) -> String {
    let serves = serves(r);
    match &r.refused {
        Some(why) => format!("{pod} ({serves}; refused the newer: {why})"),
        None => format!("{pod} ({serves})"),
    }
}

fn name_some(items: &[String]) -> String {
    let mut out = items
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > NAMED {
        out.push_str(&format!(" and {} more", items.len() - NAMED));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: &str = "sha256:0123456789abcdef0123";
    const OLD: &str = "sha256:fedcba9876543210fedc";

    fn report(pod: &str, generation: Option<&str>) -> RelayReport {
        RelayReport {
            pod: pod.into(),
            pod_namespace: Some("mail".into()),
            generation: generation.map(Into::into),
            ..RelayReport::default()
        }
    }

    fn pod(name: &str, ready: bool) -> RelayPod {
        RelayPod {
            namespace: "mail".into(),
            name: name.into(),
            ready,
            ready_since: Some(at(0)),
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    /// Published at 10 s, assessed at `now` s, deadline 60 s.
    fn timing(now: i64) -> Timing {
        Timing {
            published_at: at(10),
            now: at(now),
            deadline: Duration::from_secs(60),
        }
    }

    /// Within the deadline.
    fn soon() -> Timing {
        timing(20)
    }

    #[test]
    fn every_ready_pod_serving_the_generation_is_propagated() {
        let reports = [report("r-1", Some(NEW)), report("r-2", Some(NEW))];
        let pods = [pod("r-1", true), pod("r-2", true)];
        let p = assess(Some(NEW), "mail", &reports, Some(&pods), &soon());
        assert_eq!(
            (p.status, p.reason, p.serving.as_str()),
            ("True", ALL_SERVING, "2/2")
        );
        assert_eq!(
            p.message,
            "2 of 2 Ready relay pod(s) serve generation 0123456789ab"
        );
        assert!(p.gone.is_empty());
    }

    #[test]
    fn a_pod_on_an_older_generation_is_behind_with_its_refusal() {
        let mut refused = report("r-2", Some(OLD));
        refused.refused = Some("shard 1: hash mismatch".into());
        let reports = [report("r-1", Some(NEW)), refused, report("r-3", None)];
        let pods = [pod("r-1", true), pod("r-2", true), pod("r-3", true)];
        let p = assess(Some(NEW), "mail", &reports, Some(&pods), &soon());
        assert_eq!(
            (p.status, p.reason, p.serving.as_str()),
            ("False", BEHIND, "1/3")
        );
        assert_eq!(
            p.message,
            "2 of 3 Ready relay pod(s) do not serve generation 0123456789ab: \
             r-2 (serves fedcba987654; refused the newer: shard 1: hash mismatch), r-3 (serves no table)"
        );
    }

    #[test]
    fn a_ready_pod_without_a_report_makes_it_unknown_not_true() {
        let reports = [report("r-1", Some(NEW))];
        let pods = [pod("r-1", true), pod("r-2", true)];
        let p = assess(Some(NEW), "mail", &reports, Some(&pods), &soon());
        assert_eq!(
            (p.status, p.reason, p.serving.as_str()),
            ("Unknown", NOT_REPORTING, "1/2")
        );
        assert_eq!(
            p.message,
            "1 Ready relay pod(s) have not reported serving generation 0123456789ab within 60 s \
             (each may serve it and be unable to report: see its log): r-2 (no report)"
        );
    }

    #[test]
    fn unready_pods_do_not_count_and_gone_pods_are_listed_for_removal() {
        let reports = [
            report("r-1", Some(NEW)),
            report("r-2", Some(OLD)),
            report("gone", Some(OLD)),
        ];
        let pods = [pod("r-1", true), pod("r-2", false)];
        let p = assess(Some(NEW), "mail", &reports, Some(&pods), &soon());
        assert_eq!((p.status, p.serving.as_str()), ("True", "1/1"));
        assert_eq!(p.gone, vec![("mail".to_owned(), "gone".to_owned())]);
    }

    #[test]
    fn no_ready_relay_is_unknown() {
        let p = assess(Some(NEW), "mail", &[], Some(&[pod("r-1", false)]), &soon());
        assert_eq!(
            (p.status, p.reason, p.serving.as_str()),
            ("Unknown", NO_RELAYS, "0/0")
        );
    }

    #[test]
    fn nothing_published_is_unknown() {
        let p = assess(None, "mail", &[report("r-1", Some(OLD))], None, &soon());
        assert_eq!((p.status, p.reason), ("Unknown", NOT_PUBLISHED));
    }

    #[test]
    fn without_pod_knowledge_every_report_is_a_ready_relay() {
        let reports = [report("host-a", Some(NEW)), report("host-b", Some(OLD))];
        let p = assess(Some(NEW), "mail", &reports, None, &soon());
        assert_eq!((p.status, p.serving.as_str()), ("False", "1/2"));
        assert!(p.gone.is_empty());
        let p = assess(Some(NEW), "mail", &reports[..1], None, &soon());
        assert_eq!(p.status, "True");
    }

    #[test]
    fn a_report_without_its_namespace_is_in_the_default_one() {
        let mut r = report("r-1", Some(NEW));
        r.pod_namespace = None;
        let p = assess(Some(NEW), "mail", &[r], Some(&[pod("r-1", true)]), &soon());
        assert_eq!(p.status, "True");
    }

    #[test]
    fn long_lists_name_ten_pods_and_count_the_rest() {
        let names: Vec<String> = (0..12).map(|i| format!("r-{i:02}")).collect();
        let reports: Vec<_> = names.iter().map(|n| report(n, Some(OLD))).collect();
        let pods: Vec<_> = names.iter().map(|n| pod(n, true)).collect();
        let p = assess(Some(NEW), "mail", &reports, Some(&pods), &soon());
        assert!(
            p.message.ends_with("r-09 (serves fedcba987654) and 2 more"),
            "{}",
            p.message
        );
    }

    #[test]
    fn an_old_report_past_the_deadline_is_unknown_not_behind() {
        // r-2 loaded the table but cannot write: all the operator has is
        // its report of the generation before.
        let reports = [report("r-1", Some(NEW)), report("r-2", Some(OLD))];
        let pods = [pod("r-1", true), pod("r-2", true)];
        let within = assess(Some(NEW), "mail", &reports, Some(&pods), &timing(69));
        assert_eq!((within.status, within.reason), ("False", BEHIND));
        assert_eq!(within.recheck_after, Some(Duration::from_secs(1)));
        let past = assess(Some(NEW), "mail", &reports, Some(&pods), &timing(70));
        assert_eq!(
            (past.status, past.reason, past.serving.as_str()),
            ("Unknown", NOT_REPORTING, "1/2")
        );
        assert_eq!(
            past.message,
            "1 Ready relay pod(s) have not reported serving generation 0123456789ab within 60 s \
             (each may serve it and be unable to report: see its log): r-2 (last report: serves fedcba987654)"
        );
        assert_eq!(past.recheck_after, None);
    }

    #[test]
    fn a_refusal_stays_behind_past_the_deadline_and_names_the_silent_too() {
        let mut refused = report("r-1", Some(OLD));
        refused.refused = Some("shard 0: bad JSON".into());
        let reports = [refused, report("r-2", Some(OLD))];
        let pods = [pod("r-1", true), pod("r-2", true)];
        let p = assess(Some(NEW), "mail", &reports, Some(&pods), &timing(500));
        assert_eq!(
            (p.status, p.reason, p.serving.as_str()),
            ("False", BEHIND, "0/2")
        );
        assert_eq!(
            p.message,
            "1 of 2 Ready relay pod(s) do not serve generation 0123456789ab: \
             r-1 (serves fedcba987654; refused the newer: shard 0: bad JSON); \
             1 Ready relay pod(s) have not reported serving generation 0123456789ab within 60 s \
             (each may serve it and be unable to report: see its log): r-2 (last report: serves fedcba987654)"
        );
        // A refusal is final until the next table: nothing to recheck.
        assert_eq!(p.recheck_after, None);
    }

    #[test]
    fn the_deadline_counts_from_when_a_pod_became_ready_if_later() {
        let reports = [report("r-1", Some(OLD))];
        let mut late = pod("r-1", true);
        late.ready_since = Some(at(100));
        let p = assess(
            Some(NEW),
            "mail",
            &reports,
            Some(&[late.clone()]),
            &timing(150),
        );
        assert_eq!(
            (p.status, p.recheck_after),
            ("False", Some(Duration::from_secs(10)))
        );
        let p = assess(Some(NEW), "mail", &reports, Some(&[late]), &timing(160));
        assert_eq!(p.status, "Unknown");
    }

    #[test]
    fn a_clock_that_went_back_counts_as_no_time_waited() {
        let reports = [report("r-1", Some(OLD))];
        let p = assess(
            Some(NEW),
            "mail",
            &reports,
            Some(&[pod("r-1", true)]),
            &timing(0),
        );
        assert_eq!(
            (p.status, p.recheck_after),
            ("False", Some(Duration::from_secs(60)))
        );
    }

    #[test]
    fn long_pod_names_give_field_managers_of_128_characters() {
        assert_eq!(relay_field_manager("r-1"), "mailroute-relay-r-1");
        assert_eq!(relay_field_manager(&"x".repeat(300)).len(), 128);
    }

    #[test]
    fn short_takes_twelve_hex_digits() {
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
    }
}
