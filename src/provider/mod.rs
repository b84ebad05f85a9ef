//! Kubelet image credential provider plugins, run by the operator as the kubelet runs them:
//! the administrator's config file ([`config`]), the exec protocol ([`protocol`]), one bounded
//! run ([`exec`]). What a credential does with the answer is the controller's
//! (`controller::mint`).

pub mod config;
pub mod exec;
pub mod protocol;
