//! The credential library: docker config JSON parsing, validation and normalization.
//!
//! Pure code: no I/O, no Kubernetes types. The controller and the CLI are built on it, so the
//! operator and `regcred-operator normalize` always agree on what a valid credential is.

mod docker_config;
mod registry_key;

pub use docker_config::{
    ConfigProblem, ConfigWarning, DockerConfig, InvalidDockerConfig, KeyRewrite, Normalized, RegistryAuth,
    docker_config_from_basic_auth, normalize_docker_config,
};
pub use registry_key::{DOCKER_HUB, KeyProblem, KeyWarning, RegistryKey, normalize_registry_key};
