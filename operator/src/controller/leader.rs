//! Leader election on a coordination.k8s.io Lease (kube-lease-manager).
//! Every replica watches and compiles; only the holder of the lease writes,
//! and it checks before every single write, so losing the lease stops
//! writes at once.

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone)]
pub struct Leadership {
    state: watch::Receiver<bool>,
    /// Keeps a manual or fixed sender alive (tests, --leader-elect=false).
    _sender: Option<Arc<watch::Sender<bool>>>,
}

impl Leadership {
    /// Always (or never) the leader: a single replica without election, and tests.
    pub fn fixed(leader: bool) -> Leadership {
        Leadership::manual(leader).0
    }

    /// A leadership the caller switches (tests).
    pub fn manual(leader: bool) -> (Leadership, Arc<watch::Sender<bool>>) {
        let (tx, rx) = watch::channel(leader);
        let tx = Arc::new(tx);
        let l = Leadership {
            state: rx,
            _sender: Some(tx.clone()),
        };
        (l, tx)
    }

    pub fn is_leader(&self) -> bool {
        *self.state.borrow()
    }

    /// Resolves at the next change of leadership, with the new state.
    pub async fn changed(&mut self) -> Option<bool> {
        self.state.changed().await.ok()?;
        Some(*self.state.borrow_and_update())
    }
}

pub struct Election {
    pub leadership: Leadership,
    /// Dropping every receiver makes the manager release the lease; this
    /// task ends when it has.
    pub task: tokio::task::JoinHandle<
        Result<kube_lease_manager::LeaseManager, kube_lease_manager::LeaseManagerError>,
    >,
}

/// Joins the election for `lease` in `namespace` as `identity`.
pub async fn elect(
    client: Client,
    namespace: &str,
    lease: &str,
    identity: &str,
    duration_seconds: u64,
) -> anyhow::Result<Election> {
    let manager = LeaseManagerBuilder::new(client, lease)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(duration_seconds)
        .with_grace((duration_seconds / 3).max(1))
        .with_field_manager(super::publish::FIELD_MANAGER)
        .build()
        .await?;
    let (state, task) = manager.watch().await;
    Ok(Election {
        leadership: Leadership {
            state,
            _sender: None,
        },
        task,
    })
}
