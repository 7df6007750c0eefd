//! Problems found while compiling, and the conditions they become
//! (docs/design.md, "Analysis and status"). Pure: no timestamps here; the operator adds
//! `lastTransitionTime` when it writes status.

use crate::crd::Kind;
use hashbrown::HashMap;
use std::borrow::Cow;

/// Every reason of docs/design.md, "Analysis and status", in the order that decides which one a
/// condition names when an object has several.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    RewriteCycle,
    ForwardsToSelf,
    MxForAcceptedDomain,
    DuplicateClaim,
    SharedAuthoritativeSpace,
    RelayWithoutRoute,
    DuplicateAddress,
    DuplicateGrant,
    DomainNotAccepted,
    NoRoute,
    TemplateIncomplete,
    MissingReference,
    InvalidSecret,
    InvalidSpec,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RewriteCycle => "RewriteCycle",
            Reason::ForwardsToSelf => "ForwardsToSelf",
            Reason::MxForAcceptedDomain => "MxForAcceptedDomain",
            Reason::DuplicateClaim => "DuplicateClaim",
            Reason::SharedAuthoritativeSpace => "SharedAuthoritativeSpace",
            Reason::RelayWithoutRoute => "RelayWithoutRoute",
            Reason::DuplicateAddress => "DuplicateAddress",
            Reason::DuplicateGrant => "DuplicateGrant",
            Reason::DomainNotAccepted => "DomainNotAccepted",
            Reason::NoRoute => "NoRoute",
            Reason::TemplateIncomplete => "TemplateIncomplete",
            Reason::MissingReference => "MissingReference",
            Reason::InvalidSecret => "InvalidSecret",
            Reason::InvalidSpec => "InvalidSpec",
        }
    }

    fn is_loop(self) -> bool {
        matches!(
            self,
            Reason::RewriteCycle | Reason::ForwardsToSelf | Reason::MxForAcceptedDomain
        )
    }

    fn is_conflict(self) -> bool {
        matches!(
            self,
            Reason::DuplicateClaim
                | Reason::SharedAuthoritativeSpace
                | Reason::RelayWithoutRoute
                | Reason::DuplicateGrant
        )
    }
}

pub const READY: &str = "Ready";
pub const LOOP_RISK: &str = "LoopRisk";
pub const CONFLICT: &str = "AuthoritativenessConflict";
/// kstatus: True whenever Ready is False because of the objects' content.
pub const STALLED: &str = "Stalled";

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub reason: Reason,
    pub message: String,
}

/// Problems by object, collected by the compiler and the analyser.
#[derive(Default, Debug)]
pub(crate) struct Problems {
    /// By kind (in `Kind::ALL` order), then object name.
    by_kind: [HashMap<String, Vec<Problem>>; 5],
}

impl Problems {
    fn of_kind(&mut self, kind: Kind) -> &mut HashMap<String, Vec<Problem>> {
        &mut self.by_kind[kind as usize]
    }

    pub fn add(&mut self, kind: Kind, name: &str, reason: Reason, message: impl Into<String>) {
        let problem = Problem {
            reason,
            message: message.into(),
        };
        let map = self.of_kind(kind);
        match map.get_mut(name) {
            Some(list) => list.push(problem),
            None => {
                map.insert(name.to_owned(), vec![problem]);
            }
        }
    }

    /// The object's problems, sorted by reason then message, duplicates removed.
    pub fn take(&mut self, kind: Kind, name: &str) -> Vec<Problem> {
        let Some(mut ps) = self.of_kind(kind).remove(name) else {
            return Vec::new();
        };
        ps.sort();
        ps.dedup();
        ps
    }
}

/// One condition, without the timestamp the operator adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionSummary {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: Cow<'static, str>,
}

impl ConditionSummary {
    pub fn status_str(&self) -> &'static str {
        if self.status { "True" } else { "False" }
    }
}

/// What the compiler says about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectReport {
    pub kind: Kind,
    pub name: String,
    /// `metadata.generation` of the object compiled, for `observedGeneration`.
    pub generation: Option<i64>,
    pub problems: Vec<Problem>,
    /// Ready, LoopRisk, AuthoritativenessConflict, in that order.
    pub conditions: [ConditionSummary; 3],
    /// For MailContacts: the reply address and every address in the table.
    pub primary_address: Option<String>,
    pub addresses: Vec<String>,
}

impl ObjectReport {
    pub(crate) fn new(
        kind: Kind,
        name: String,
        generation: Option<i64>,
        problems: Vec<Problem>,
        ready_message: String,
    ) -> ObjectReport {
        let ready = match problems.first() {
            // Ready is False when any problem touches the object.
            Some(first) => ConditionSummary {
                type_: READY,
                status: false,
                reason: first.reason.as_str(),
                message: join(problems.iter()).into(),
            },
            None => ConditionSummary {
                type_: READY,
                status: true,
                reason: "Compiled",
                message: ready_message.into(),
            },
        };
        let conditions = [
            ready,
            flagged(
                LOOP_RISK,
                &problems,
                Reason::is_loop,
                "NoLoopRisk",
                "no route through this object comes back",
            ),
            flagged(
                CONFLICT,
                &problems,
                Reason::is_conflict,
                "NoConflict",
                "no contradictory claim of authority",
            ),
        ];
        ObjectReport {
            kind,
            name,
            generation,
            problems,
            conditions,
            primary_address: None,
            addresses: Vec::new(),
        }
    }

    /// An object that could not even be read (it does not match the types,
    /// e.g. written under an older schema): Ready False, `InvalidSpec`. It
    /// takes no part in the table; the others go on without it.
    pub fn unreadable(
        kind: Kind,
        name: String,
        generation: Option<i64>,
        error: &str,
    ) -> ObjectReport {
        let problem = Problem {
            reason: Reason::InvalidSpec,
            message: format!("{kind}/{name} could not be read: {error}"),
        };
        ObjectReport::new(kind, name, generation, vec![problem], String::new())
    }

    pub fn is_ready(&self) -> bool {
        self.conditions[0].status
    }

    /// The kstatus `Stalled` condition: True with Ready's reason whenever
    /// Ready is False.
    pub fn stalled(&self) -> ConditionSummary {
        let ready = &self.conditions[0];
        if ready.status {
            ConditionSummary {
                type_: STALLED,
                status: false,
                reason: "Compiled",
                message: "not stalled".into(),
            }
        } else {
            ConditionSummary {
                type_: STALLED,
                status: true,
                reason: ready.reason,
                message: ready.message.clone(),
            }
        }
    }
}

fn join<'a>(problems: impl Iterator<Item = &'a Problem>) -> String {
    problems
        .map(|p| format!("{}: {}", p.reason.as_str(), p.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// True (with the first matching problem's reason and all matching
/// messages) when any problem matches, else False with the given reason.
fn flagged(
    type_: &'static str,
    problems: &[Problem],
    matches: fn(Reason) -> bool,
    reason: &'static str,
    message: &'static str,
) -> ConditionSummary {
    match problems.iter().find(|p| matches(p.reason)) {
        Some(first) => ConditionSummary {
            type_,
            status: true,
            reason: first.reason.as_str(),
            message: join(problems.iter().filter(|p| matches(p.reason))).into(),
        },
        None => ConditionSummary {
            type_,
            status: false,
            reason,
            message: message.into(),
        },
    }
}

/// "MailContact/a, MailContact/b and 3 more": keeps condition messages short
/// however many objects are involved.
pub(crate) fn list_names(names: &[String], limit: usize) -> String {
    let shown = names
        .iter()
        .take(limit)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    match names.len().saturating_sub(limit) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}
