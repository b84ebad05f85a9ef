//! The credential library: docker config JSON parsing, validation and normalization, and the
//! matching of image references against registry keys.
//!
//! Pure code: no I/O, no Kubernetes types. The controller and the CLI are built on it, so the
//! operator and `regcred-operator normalize` always agree on what a valid credential is.

mod docker_config;
pub mod expiry;
mod image_reference;
pub mod pull_secret;
mod registry_key;

pub use docker_config::{
    ConfigProblem, ConfigWarning, DockerConfig, InvalidDockerConfig, KeyRewrite, Normalized, RegistryAuth,
    docker_config_from_basic_auth, normalize_docker_config, written_registry_keys,
};
pub use image_reference::{
    ImageReference, ImageReferenceError, covering_key, key_matches_image, kubelet_key, wildcard_matches,
};
pub use registry_key::{DOCKER_HUB, KeyProblem, KeyWarning, RegistryKey, normalize_registry_key, redact_key};
