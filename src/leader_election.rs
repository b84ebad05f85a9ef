//! One active replica: leader election on a coordination.k8s.io Lease (kube-lease-manager).

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::controller::FIELD_MANAGER;

#[derive(Debug, Clone)]
pub(crate) struct LeaseSettings {
    pub(crate) name: String,
    pub(crate) namespace: String,
    /// This replica's name in the Lease's `holderIdentity`.
    pub(crate) identity: String,
    /// How long a Lease held by a replica that stopped renewing keeps others waiting.
    pub(crate) duration_seconds: u64,
    /// How long before expiry the holder renews.
    pub(crate) grace_seconds: u64,
}

/// A running election: the Lease is acquired and renewed in the background.
pub(crate) struct Leadership {
    is_leader: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
}

impl Leadership {
    /// Joins the election for the Lease (creating it if needed).
    pub(crate) async fn join(client: Client, settings: &LeaseSettings) -> Result<Leadership, LeaseManagerError> {
        let manager = LeaseManagerBuilder::new(client, &settings.name)
            .with_namespace(&settings.namespace)
            .with_identity(&settings.identity)
            .with_duration(settings.duration_seconds)
            .with_grace(settings.grace_seconds)
            .with_field_manager(FIELD_MANAGER)
            .build()
            .await?;
        let (is_leader, task) = manager.watch().await;
        info!(lease = %settings.name, namespace = %settings.namespace, identity = %settings.identity, "joined leader election");
        Ok(Leadership { is_leader, task })
    }

    /// Resolves once this replica holds the Lease; `false` if the election ended first.
    pub(crate) async fn acquired(&mut self) -> bool {
        self.is_leader.wait_for(|leading| *leading).await.is_ok()
    }

    /// A receiver that turns `false` when this replica loses the Lease.
    pub(crate) fn subscribe(&self) -> watch::Receiver<bool> {
        self.is_leader.clone()
    }

    /// Gives the Lease up, so a standby replica takes over without waiting for it to expire.
    pub(crate) async fn release(self) {
        let Leadership { is_leader, task } = self;
        // The manager releases the Lease once every receiver is gone.
        drop(is_leader);
        match task.await {
            Ok(Ok(_)) => info!("leader Lease released"),
            Ok(Err(error)) => warn!(%error, "could not release the leader Lease"),
            Err(error) => warn!(%error, "leader election task failed"),
        }
    }
}
