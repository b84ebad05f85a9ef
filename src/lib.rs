//! regcred-operator: keeps a normalized image pull secret in every selected namespace and on the
//! selected ServiceAccounts, and checks pull-secret mistakes offline and live.
//!
//! - [`credential`]: docker config parsing and normalization (pure).
//! - [`crd`]: the `RegistryCredential` custom resource.
//! - [`controller`]: the reconciling controller (`regcred-operator run`).
//! - `provider`: kubelet image credential provider plugins, the minting sources.
//! - [`cli`]: the subcommands of the `regcred-operator` binary.

pub mod cli;
mod controller;
pub mod crd;
pub mod credential;
mod leader_election;
mod metrics;
mod pace;
mod provider;
mod reason;
mod telemetry;
