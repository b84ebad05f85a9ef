//! Integration tests against the real control plane that `tests/cluster/up.sh` starts.
//!
//! They read `KUBECONFIG`. Without it they skip with a printed reason, except with `CI=true`,
//! where a missing control plane is a failure.

mod admission;
mod control_plane;
mod controller;
mod doctor;
mod expiry;
mod gitops;
mod hardening;
mod leadership;
mod minting;
mod node;
mod observability;
mod packaging;
mod recovery;
