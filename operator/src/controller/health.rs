//! What keeps the operator from doing its job right now: a watch that
//! fails, or writes the API server forbids (RBAC). Each problem is logged
//! where it happens; here it is kept, by what it is about, until that
//! thing works again, so `/readyz` can say it (and `kubectl get pods`
//! shows the replica not Ready) instead of looking fine.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct Health {
    problems: Mutex<BTreeMap<String, String>>,
}

impl Health {
    /// Records a problem with `what` (e.g. "watch MailContact").
    pub fn set(&self, what: &str, problem: impl ToString) {
        let mut problems = self.problems.lock().expect("health lock");
        problems.insert(what.to_owned(), problem.to_string());
    }

    /// `what` works again.
    pub fn clear(&self, what: &str) {
        let mut problems = self.problems.lock().expect("health lock");
        if !problems.is_empty() {
            problems.remove(what);
        }
    }

    /// Every problem, one per line, or None when there is none.
    pub fn summary(&self) -> Option<String> {
        let problems = self.problems.lock().expect("health lock");
        (!problems.is_empty()).then(|| {
            problems
                .iter()
                .map(|(what, problem)| format!("{what}: {problem}"))
                .collect::<Vec<_>>()
                .join("\n")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_stays_until_its_thing_works_again() {
        let h = Health::default();
        assert_eq!(h.summary(), None);
        h.set("watch MailContact", "forbidden");
        h.set("writes in namespace mail", "configmaps is forbidden");
        h.clear("watch AddressSpace");
        assert_eq!(
            h.summary().as_deref(),
            Some("watch MailContact: forbidden\nwrites in namespace mail: configmaps is forbidden")
        );
        h.clear("watch MailContact");
        h.clear("writes in namespace mail");
        assert_eq!(h.summary(), None);
    }
}
