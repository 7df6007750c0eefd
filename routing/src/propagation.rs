//! Whether the relays serve the published table: the `Propagated`
//! condition of a RoutingTable, from the relays' own reports and the relay
//! pods the operator sees. Pure: the operator reads both from its caches.

use crate::crd::RelayReport;

/// A relay pod that serves this namespace's table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayPod {
    pub namespace: String,
    pub name: String,
    pub ready: bool,
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
pub fn assess(
    generation: Option<&str>,
    relay_namespace_default: &str,
    reports: &[RelayReport],
    pods: Option<&[RelayPod]>,
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
    let ready: Vec<(String, String)> = match pods {
        None => reports.iter().map(key).collect(),
        Some(pods) => pods
            .iter()
            .filter(|p| p.ready)
            .map(|p| (p.namespace.clone(), p.name.clone()))
            .collect(),
    };
    let mut ready = ready;
    ready.sort();
    ready.dedup();

    let Some(generation) = generation else {
        return Propagation {
            status: "Unknown",
            reason: NOT_PUBLISHED,
            message: "no table is published yet".into(),
            serving: format!("0/{}", ready.len()),
            gone,
        };
    };
    let short = short(generation);
    let mut serving = 0;
    let mut behind = Vec::new();
    let mut silent = Vec::new();
    for pod in &ready {
        match reports.iter().find(|r| &key(r) == pod) {
            Some(r) if r.generation.as_deref() == Some(generation) => serving += 1,
            Some(r) => behind.push(describe_behind(&pod.1, r)),
            None => silent.push(pod.1.clone()),
        }
    }
    let counted = format!("{serving}/{}", ready.len());
    let (status, reason, message) = if !behind.is_empty() {
        let message = format!(
            "{} of {} Ready relay pod(s) do not serve generation {short}: {}",
            behind.len(),
            ready.len(),
            name_some(&behind)
        );
        ("False", BEHIND, message)
    } else if !silent.is_empty() {
        let message = format!(
            "{} Ready relay pod(s) have not reported what they serve: {}",
            silent.len(),
            name_some(&silent)
        );
        ("Unknown", NOT_REPORTING, message)
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

fn describe_behind(pod: &str, r: &RelayReport) -> String {
    let serves = match &r.generation {
        Some(g) => format!("serves {}", short(g)),
        None => "serves no table".to_owned(),
    };
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
        }
    }

    #[test]
    fn every_ready_pod_serving_the_generation_is_propagated() {
        let reports = [report("r-1", Some(NEW)), report("r-2", Some(NEW))];
        let pods = [pod("r-1", true), pod("r-2", true)];
        let p = assess(Some(NEW), "mail", &reports, Some(&pods));
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
        let p = assess(Some(NEW), "mail", &reports, Some(&pods));
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
        let p = assess(Some(NEW), "mail", &reports, Some(&pods));
        assert_eq!(
            (p.status, p.reason, p.serving.as_str()),
            ("Unknown", NOT_REPORTING, "1/2")
        );
        assert_eq!(
            p.message,
            "1 Ready relay pod(s) have not reported what they serve: r-2"
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
        let p = assess(Some(NEW), "mail", &reports, Some(&pods));
        assert_eq!((p.status, p.serving.as_str()), ("True", "1/1"));
        assert_eq!(p.gone, vec![("mail".to_owned(), "gone".to_owned())]);
    }

    #[test]
    fn no_ready_relay_is_unknown() {
        let p = assess(Some(NEW), "mail", &[], Some(&[pod("r-1", false)]));
        assert_eq!(
            (p.status, p.reason, p.serving.as_str()),
            ("Unknown", NO_RELAYS, "0/0")
        );
    }

    #[test]
    fn nothing_published_is_unknown() {
        let p = assess(None, "mail", &[report("r-1", Some(OLD))], None);
        assert_eq!((p.status, p.reason), ("Unknown", NOT_PUBLISHED));
    }

    #[test]
    fn without_pod_knowledge_every_report_is_a_ready_relay() {
        let reports = [report("host-a", Some(NEW)), report("host-b", Some(OLD))];
        let p = assess(Some(NEW), "mail", &reports, None);
        assert_eq!((p.status, p.serving.as_str()), ("False", "1/2"));
        assert!(p.gone.is_empty());
        let p = assess(Some(NEW), "mail", &reports[..1], None);
        assert_eq!(p.status, "True");
    }

    #[test]
    fn a_report_without_its_namespace_is_in_the_default_one() {
        let mut r = report("r-1", Some(NEW));
        r.pod_namespace = None;
        let p = assess(Some(NEW), "mail", &[r], Some(&[pod("r-1", true)]));
        assert_eq!(p.status, "True");
    }

    #[test]
    fn long_lists_name_ten_pods_and_count_the_rest() {
        let names: Vec<String> = (0..12).map(|i| format!("r-{i:02}")).collect();
        let reports: Vec<_> = names.iter().map(|n| report(n, Some(OLD))).collect();
        let pods: Vec<_> = names.iter().map(|n| pod(n, true)).collect();
        let p = assess(Some(NEW), "mail", &reports, Some(&pods));
        assert!(
            p.message.ends_with("r-09 (serves fedcba987654) and 2 more"),
            "{}",
            p.message
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
