//! Each namespace's RoutingTable: what the operator published and whether
//! the relays serve it. Pure: [`super::propagate`] reads the caches, calls
//! these and writes what differs.
//!
//! The status has two kinds of writers, kept apart by server-side apply:
//! the operator owns everything but `relays`; each relay pod owns its own
//! entry of `relays` (field manager
//! [`routing::propagation::relay_field_manager`]), so no write
//! ever overwrites another's.

use super::publish::{MANAGED_BY, MANAGED_BY_LABEL, TABLE_LABEL};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use routing::ObjectReport;
use routing::crd::{API_VERSION, Kind, ObjectCounts, RoutingTableStatus};
use routing::propagation::{Propagation, short};

pub const PUBLISHED: &str = "Published";
pub const PROPAGATED: &str = "Propagated";
/// kstatus reads an object as in progress while `Reconciling` is True.
pub const RECONCILING: &str = "Reconciling";

/// What the reconciler published in a namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    pub generation: String,
    pub published_at: Time,
    pub config_maps: u32,
    pub bytes: u64,
    pub objects: ObjectCounts,
}

/// How many objects of each kind, and how many are not Ready.
pub fn count_objects<'a>(reports: impl IntoIterator<Item = &'a ObjectReport>) -> ObjectCounts {
    let mut counts = ObjectCounts::default();
    for r in reports {
        match r.kind {
            Kind::AddressSpace => counts.address_spaces += 1,
            Kind::RecipientPolicy => counts.recipient_policies += 1,
            Kind::MailContact => counts.mail_contacts += 1,
            Kind::SmtpConnector => counts.smtp_connectors += 1,
            Kind::SendingGrant => counts.sending_grants += 1,
        }
        if !r.is_ready() {
            counts.with_problems += 1;
        }
    }
    counts
}

/// The part of the status the operator owns (`relays` left empty: the
/// relays own it), conditions keeping their transition time while their
/// status holds.
pub fn operator_status(
    published: &Published,
    propagation: &Propagation,
    old: &[Condition],
    now: &Time,
) -> RoutingTableStatus {
    let short_generation = short(&published.generation);
    let published_condition = (
        PUBLISHED,
        "True",
        "Published",
        format!(
            "generation {short_generation}: {} ConfigMap(s), {} bytes",
            published.config_maps, published.bytes
        ),
    );
    let reconciling_status = if propagation.status == "True" {
        "False"
    } else {
        "True"
    };
    let reconciling = (
        RECONCILING,
        reconciling_status,
        propagation.reason,
        propagation.message.clone(),
    );

    let conditions = [
        published_condition,
        (
            PROPAGATED,
            propagation.status,
            propagation.reason,
            propagation.message.clone(),
        ),
        reconciling,
    ]
    .into_iter()
    .map(|(type_, status, reason, message)| {
        let last_transition_time = old
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: None,
            last_transition_time,
        }
    })
    .collect();
    RoutingTableStatus {
        generation: Some(published.generation.clone()),
        short_generation: Some(short_generation),
        published_at: Some(published.published_at.clone()),
        config_maps: Some(published.config_maps),
        bytes: Some(published.bytes),
        objects: Some(published.objects.clone()),
        relays_serving: Some(propagation.serving.clone()),
        relays: Vec::new(),
        conditions,
    }
}

/// Whether `current` already says what `wanted` does (the relays' entries
/// aside).
pub fn is_current(current: Option<&RoutingTableStatus>, wanted: &RoutingTableStatus) -> bool {
    current.is_some_and(|c| {
        let mut c = c.clone();
        c.relays = Vec::new();
        &c == wanted
    })
}

/// The object itself: created by server-side apply, labelled like the
/// table's ConfigMaps.
pub fn object_body(name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "RoutingTable",
        "metadata": {
            "name": name,
            "labels": { MANAGED_BY_LABEL: MANAGED_BY, TABLE_LABEL: name },
        },
        "spec": { "configMapName": name },
    })
}

/// The operator's status apply.
pub fn status_body(name: &str, status: &RoutingTableStatus) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "RoutingTable",
        "metadata": { "name": name },
        "status": status,
    })
}

/// The apply that removes a gone pod's entry, made as that pod's own
/// field manager ([`routing::propagation::relay_field_manager`]):
/// server-side apply then drops exactly what that manager owned.
pub fn removal_body(name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "RoutingTable",
        "metadata": { "name": name },
        "status": { "relays": [] },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use routing::propagation::{BEHIND, Timing, assess};

    fn time(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
    }

    /// Published at 100 s, assessed at 110 s.
    fn timing() -> Timing {
        Timing {
            published_at: time(100).0,
            now: time(110).0,
            deadline: std::time::Duration::from_secs(120),
        }
    }

    fn published() -> Published {
        Published {
            generation: "0123456789abcdef".into(),
            published_at: time(100),
            config_maps: 3,
            bytes: 4096,
            objects: ObjectCounts {
                mail_contacts: 2,
                with_problems: 1,
                ..ObjectCounts::default()
            },
        }
    }

    #[test]
    fn behind_relays_make_it_reconciling_and_not_propagated() {
        let p = assess(Some("0123456789abcdef"), "mail", &[], None, &timing());
        let s = operator_status(&published(), &p, &[], &time(200));
        let by_type = |t: &str| s.conditions.iter().find(|c| c.type_ == t).unwrap();
        assert_eq!(by_type(PUBLISHED).status, "True");
        assert_eq!(
            by_type(PUBLISHED).message,
            "generation 0123456789ab: 3 ConfigMap(s), 4096 bytes"
        );
        assert_eq!(by_type(PROPAGATED).status, "Unknown");
        assert_eq!(by_type(RECONCILING).status, "True");
        assert_eq!(s.short_generation.as_deref(), Some("0123456789ab"));
        assert_eq!(s.relays_serving.as_deref(), Some("0/0"));
    }

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_holds() {
        let reports = [routing::crd::RelayReport {
            pod: "r".into(),
            generation: Some("old".into()),
            ..Default::default()
        }];
        let p = assess(Some("0123456789abcdef"), "mail", &reports, None, &timing());
        assert_eq!(p.reason, BEHIND);
        let first = operator_status(&published(), &p, &[], &time(200));
        let again = operator_status(&published(), &p, &first.conditions, &time(300));
        assert_eq!(first, again);
        assert!(is_current(Some(&first), &again));
    }

    #[test]
    fn relay_entries_do_not_make_a_status_differ() {
        let p = assess(Some("0123456789abcdef"), "mail", &[], None, &timing());
        let wanted = operator_status(&published(), &p, &[], &time(200));
        let mut current = wanted.clone();
        current.relays.push(routing::crd::RelayReport::default());
        assert!(is_current(Some(&current), &wanted));
        assert!(!is_current(None, &wanted));
    }
}
