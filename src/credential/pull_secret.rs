//! What a Secret named in `imagePullSecrets` gives the kubelet: the pull-secret types, their data
//! keys, and how the kubelet reads them. Used by the controller (sources and copies), `lint` (on
//! manifests) and `doctor` (on the cluster). Pure: callers hand in the Secret's type and decoded data.

use std::collections::BTreeMap;

use super::{
    ImageReference, InvalidDockerConfig, Normalized, covering_key, kubelet_key, normalize_docker_config,
    written_registry_keys,
};

/// The Secret type of a docker config JSON pull secret, and the data key the kubelet reads.
pub(crate) const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
pub(crate) const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
/// The legacy `.dockercfg` pull secret: its type and data key.
pub(crate) const DOCKERCFG_TYPE: &str = "kubernetes.io/dockercfg";
pub(crate) const DOCKERCFG_KEY: &str = ".dockercfg";

/// How the kubelet reads one Secret as a pull secret (`MakeDockerKeyring` in
/// pkg/credentialprovider/secrets: the type and the data key must agree, or the Secret is skipped).
#[derive(Debug)]
pub(crate) enum PullSecretReading {
    /// The type and data key agree; the config is checked by the credential library.
    Config {
        data_key: &'static str,
        /// The registry keys as written, in order; `None` when the JSON does not even parse.
        registry_keys: Option<Vec<String>>,
        normalized: Result<Normalized, InvalidDockerConfig>,
    },
    /// A docker config under a type the kubelet does not read it from (e.g. `Opaque`).
    WrongType { secret_type: String, data_key: &'static str, expected_type: &'static str },
    /// A pull-secret type without its data key (the API server refuses this on create).
    MissingKey { secret_type: String, data_key: &'static str },
    /// Not a pull secret at all.
    NoConfig { secret_type: String },
}

/// Reads a Secret of `secret_type` (absent = `Opaque`) with already decoded `data`.
pub(crate) fn read_pull_secret(secret_type: Option<&str>, data: &BTreeMap<String, Vec<u8>>) -> PullSecretReading {
    let secret_type = secret_type.unwrap_or("Opaque");
    let expected_key = match secret_type {
        DOCKER_CONFIG_JSON_TYPE => Some(DOCKER_CONFIG_JSON_KEY),
        DOCKERCFG_TYPE => Some(DOCKERCFG_KEY),
        _ => None,
    };
    match expected_key {
        Some(data_key) => match data.get(data_key) {
            Some(bytes) => PullSecretReading::Config {
                data_key,
                registry_keys: registry_keys(bytes, data_key == DOCKERCFG_KEY),
                normalized: normalize_docker_config(bytes),
            },
            None => PullSecretReading::MissingKey { secret_type: secret_type.to_owned(), data_key },
        },
        None => {
            let held = [(DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE), (DOCKERCFG_KEY, DOCKERCFG_TYPE)]
                .into_iter()
                .find(|(key, _)| data.contains_key(*key));
            match held {
                Some((data_key, expected_type)) => {
                    PullSecretReading::WrongType { secret_type: secret_type.to_owned(), data_key, expected_type }
                }
                None => PullSecretReading::NoConfig { secret_type: secret_type.to_owned() },
            }
        }
    }
}

/// The registry keys of a docker config as written: from `auths` in a `.dockerconfigjson`, from
/// the top level in a legacy `.dockercfg`.
fn registry_keys(config: &[u8], legacy: bool) -> Option<Vec<String>> {
    written_registry_keys(config, legacy)
}

impl PullSecretReading {
    /// The keys as the kubelet files them (scheme and `/v1/`, `/v2/` dropped, nothing else), when
    /// the config is valid.
    pub(crate) fn kubelet_keys(&self) -> Option<Vec<String>> {
        match self {
            PullSecretReading::Config { registry_keys: Some(keys), normalized: Ok(_), .. } => {
                Some(keys.iter().map(|key| kubelet_key(key)).collect())
            }
            _ => None,
        }
    }

    /// The key, as written, that the kubelet would use for `image`; `None` when no key covers it or
    /// the config is not usable.
    pub(crate) fn covering_key(&self, image: &ImageReference) -> Option<&str> {
        let PullSecretReading::Config { registry_keys: Some(keys), normalized: Ok(_), .. } = self else {
            return None;
        };
        let filed: Vec<String> = keys.iter().map(|key| kubelet_key(key)).collect();
        let used = covering_key(filed.iter().map(String::as_str), image)?;
        filed.iter().position(|key| key == used).map(|i| keys[i].as_str())
    }

    /// Whether the kubelet gets credentials out of this Secret at all.
    pub(crate) fn is_usable(&self) -> bool {
        self.kubelet_keys().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect()
    }

    const CONFIG: &str = r#"{"auths":{"https://registry.internal.corp/v2/":{"username":"u","password":"p"}}}"#;

    #[test]
    fn a_dockerconfigjson_secret_covers_its_registries_as_the_kubelet_reads_them() {
        let reading = read_pull_secret(Some(DOCKER_CONFIG_JSON_TYPE), &data(&[(DOCKER_CONFIG_JSON_KEY, CONFIG)]));
        assert!(reading.is_usable());
        let app = ImageReference::parse("registry.internal.corp/app:v2.1.0").unwrap();
        assert_eq!(reading.covering_key(&app), Some("https://registry.internal.corp/v2/"));
        assert_eq!(reading.covering_key(&ImageReference::parse("quay.io/app").unwrap()), None);
    }

    #[test]
    fn legacy_dockercfg_has_no_auths_wrapper() {
        let legacy = r#"{"quay.io":{"username":"u","password":"p"}}"#;
        let reading = read_pull_secret(Some(DOCKERCFG_TYPE), &data(&[(DOCKERCFG_KEY, legacy)]));
        assert_eq!(reading.covering_key(&ImageReference::parse("quay.io/org/app").unwrap()), Some("quay.io"));
    }

    #[test]
    fn type_and_key_must_agree() {
        assert!(matches!(
            read_pull_secret(None, &data(&[(DOCKER_CONFIG_JSON_KEY, CONFIG)])),
            PullSecretReading::WrongType { expected_type: DOCKER_CONFIG_JSON_TYPE, .. }
        ));
        assert!(matches!(
            read_pull_secret(Some(DOCKER_CONFIG_JSON_TYPE), &data(&[(DOCKERCFG_KEY, CONFIG)])),
            PullSecretReading::MissingKey { data_key: DOCKER_CONFIG_JSON_KEY, .. }
        ));
        assert!(matches!(read_pull_secret(Some("Opaque"), &data(&[("x", "y")])), PullSecretReading::NoConfig { .. }));
    }

    #[test]
    fn an_invalid_config_covers_nothing() {
        let empty = r#"{"auths":{"registry.internal.corp":{}}}"#;
        let reading = read_pull_secret(Some(DOCKER_CONFIG_JSON_TYPE), &data(&[(DOCKER_CONFIG_JSON_KEY, empty)]));
        assert!(!reading.is_usable());
        assert_eq!(reading.covering_key(&ImageReference::parse("registry.internal.corp/app").unwrap()), None);
    }
}
