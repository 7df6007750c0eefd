//! Each object's status from its report (docs/design.md, "Analysis and status"), and the Events its
//! changes deserve. Pure: the reconciler compares, writes and publishes.
//!
//! The status is written only when it differs from what the object has, and
//! `lastTransitionTime` is carried over unless the condition's status flips,
//! so an unchanged namespace causes no writes at all.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use routing::crd::{API_VERSION, Kind, MailContactStatus};
use routing::report::{CONFLICT, LOOP_RISK};
use routing::{ConditionSummary, ObjectReport};

/// What an object has now, read from the cache.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Current {
    pub generation: Option<i64>,
    /// The object's uid: Events name it, so `kubectl describe` (which
    /// selects Events by uid) shows them.
    pub uid: Option<String>,
    /// Every kind's status fits this shape; the contact-only fields are
    /// empty for the others.
    pub status: Option<MailContactStatus>,
}

/// A status to write, and the Events to publish once it is written.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusUpdate {
    pub kind: Kind,
    pub name: String,
    pub uid: Option<String>,
    pub status: MailContactStatus,
    pub events: Vec<Transition>,
}

/// A LoopRisk or AuthoritativenessConflict that became True (a Warning) or
/// False again (Normal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// The status the object should have, or None when it has it already.
pub fn update(report: &ObjectReport, current: &Current, now: &Time) -> Option<StatusUpdate> {
    let old: &[Condition] = current.status.as_ref().map_or(&[], |s| &s.conditions);
    let generation = current.generation.or(report.generation);
    let summaries = report.conditions.iter().cloned().chain([report.stalled()]);
    let conditions: Vec<Condition> = summaries
        .map(|s| condition(s, old, generation, now))
        .collect();
    let status = MailContactStatus {
        observed_generation: generation,
        conditions,
        primary_address: report.primary_address.clone(),
        addresses: report.addresses.clone(),
    };
    if current.status.as_ref() == Some(&status) {
        return None;
    }
    let events = [LOOP_RISK, CONFLICT]
        .into_iter()
        .filter_map(|t| transition(t, old, &status.conditions))
        .collect();
    Some(StatusUpdate {
        kind: report.kind,
        name: report.name.clone(),
        uid: current.uid.clone(),
        status,
        events,
    })
}

fn condition(
    s: ConditionSummary,
    old: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = s.status_str().to_owned();
    let last_transition_time = old
        .iter()
        .find(|c| c.type_ == s.type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: s.type_.to_owned(),
        status,
        reason: s.reason.to_owned(),
        message: s.message.into_owned(),
        observed_generation: generation,
        last_transition_time,
    }
}

fn transition(type_: &str, old: &[Condition], new: &[Condition]) -> Option<Transition> {
    let is_true = |list: &[Condition]| list.iter().any(|c| c.type_ == type_ && c.status == "True");
    let now = new.iter().find(|c| c.type_ == type_)?;
    match (is_true(old), is_true(new)) {
        (false, true) => Some(Transition {
            warning: true,
            reason: now.reason.clone(),
            note: now.message.clone(),
        }),
        (true, false) => Some(Transition {
            warning: false,
            reason: format!("{type_}Cleared"),
            note: now.message.clone(),
        }),
        _ => None,
    }
}

/// The server-side apply body for the status subresource.
pub fn apply_body(update: &StatusUpdate) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": update.kind.as_str(),
        "metadata": { "name": update.name },
        "status": update.status,
    })
}

/// Events carry at most 1 kB of note.
pub fn event_note(note: &str) -> String {
    const LIMIT: usize = 1000;
    if note.len() <= LIMIT {
        return note.to_owned();
    }
    let mut end = LIMIT - 3;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &note[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use routing::fixtures::{connector, internal_relay};
    use routing::{CompileOptions, Objects, compile};

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    /// Reports for one AddressSpace whose connector points at the relay
    /// itself (LoopRisk) or elsewhere.
    fn space_report(looping: bool) -> ObjectReport {
        let mut o = Objects::default();
        let mut space = internal_relay("corp", "corp.example");
        space.metadata.generation = Some(3);
        o.address_spaces.push(space);
        let host = if looping {
            "relay.mail.svc"
        } else {
            "mbx.corp.example"
        };
        o.connectors
            .push(connector("out", &[("corp.example", 1)], &[host]));
        let options = CompileOptions {
            self_addresses: vec!["relay.mail.svc".into()],
        };
        compile(&o, &options)
            .report(Kind::AddressSpace, "corp")
            .unwrap()
            .clone()
    }

    #[test]
    fn a_new_object_gets_four_conditions_stamped_now() {
        let u = update(&space_report(false), &Current::default(), &at(100)).unwrap();
        let types: Vec<_> = u
            .status
            .conditions
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(
            types,
            ["Ready", "LoopRisk", "AuthoritativenessConflict", "Stalled"]
        );
        assert!(
            u.status
                .conditions
                .iter()
                .all(|c| c.last_transition_time == at(100))
        );
        assert!(
            u.status
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
        assert_eq!(u.status.observed_generation, Some(3));
        assert!(u.events.is_empty(), "no risk, nothing to announce");
    }

    #[test]
    fn an_unchanged_status_is_not_written_again() {
        let report = space_report(false);
        let first = update(&report, &Current::default(), &at(100)).unwrap();
        let current = Current {
            generation: Some(3),
            status: Some(first.status),
            ..Current::default()
        };
        assert_eq!(update(&report, &current, &at(200)), None);
    }

    #[test]
    fn last_transition_time_moves_only_for_conditions_that_flip() {
        let first = update(&space_report(false), &Current::default(), &at(100)).unwrap();
        let current = Current {
            generation: Some(3),
            status: Some(first.status),
            ..Current::default()
        };
        let second = update(&space_report(true), &current, &at(200)).unwrap();
        let time_of = |t: &str| {
            let c = second
                .status
                .conditions
                .iter()
                .find(|c| c.type_ == t)
                .unwrap();
            (c.status.clone(), c.last_transition_time.clone())
        };
        assert_eq!(time_of("LoopRisk"), ("True".into(), at(200)));
        assert_eq!(
            time_of("AuthoritativenessConflict"),
            ("False".into(), at(100))
        );
        assert_eq!(
            second.events,
            [Transition {
                warning: true,
                reason: "ForwardsToSelf".into(),
                note: second.status.conditions[1].message.clone(),
            }]
        );
        // And back: a Normal event, and the time moves again.
        let current = Current {
            generation: Some(3),
            status: Some(second.status),
            ..Current::default()
        };
        let third = update(&space_report(false), &current, &at(300)).unwrap();
        assert_eq!(third.events.len(), 1);
        assert!(!third.events[0].warning);
        assert_eq!(third.events[0].reason, "LoopRiskCleared");
        assert_eq!(third.status.conditions[1].last_transition_time, at(300));
    }

    #[test]
    fn a_risk_on_a_new_object_is_announced() {
        let u = update(&space_report(true), &Current::default(), &at(1)).unwrap();
        assert_eq!(u.events.len(), 1);
        assert!(u.events[0].warning);
    }

    #[test]
    fn a_new_generation_is_written_even_with_the_same_conditions() {
        let report = space_report(false);
        let first = update(&report, &Current::default(), &at(100)).unwrap();
        let current = Current {
            generation: Some(4),
            status: Some(first.status),
            ..Current::default()
        };
        let u = update(&report, &current, &at(200)).unwrap();
        assert_eq!(u.status.observed_generation, Some(4));
        assert!(
            u.status
                .conditions
                .iter()
                .all(|c| c.last_transition_time == at(100))
        );
    }

    #[test]
    fn the_apply_body_is_a_status_only_object() {
        let u = update(&space_report(false), &Current::default(), &at(0)).unwrap();
        let body = apply_body(&u);
        assert_eq!(body["apiVersion"], "mailroute.io/v1alpha1");
        assert_eq!(body["kind"], "AddressSpace");
        assert_eq!(body["status"]["observedGeneration"], 3);
        assert_eq!(
            body["status"]["conditions"][0]["lastTransitionTime"],
            "1970-01-01T00:00:00Z"
        );
        assert!(body.get("spec").is_none());
    }

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        let note = "é".repeat(800);
        let cut = event_note(&note);
        assert!(cut.len() <= 1000 && cut.ends_with("..."));
    }
}
