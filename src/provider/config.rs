//! The credential providers the operator may run: the kubelet's own `CredentialProviderConfig`
//! file (`kubelet.config.k8s.io/v1`), read once at start. Only the administrator who starts the
//! operator chooses a plugin, its arguments and its environment; a RegistryCredential only names a
//! provider of this file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use super::protocol::{PROTOCOL_API_VERSION, parse_go_duration};
use crate::credential::{ImageReference, key_matches_image};

/// The configuration file's apiVersions the kubelet reads; the fields used here are the same in each.
const CONFIG_API_VERSIONS: [&str; 3] =
    ["kubelet.config.k8s.io/v1", "kubelet.config.k8s.io/v1beta1", "kubelet.config.k8s.io/v1alpha1"];

// Unknown fields are refused: a misspelt `requireServiceAccount` must not silently drop the
// requirement.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigFile {
    api_version: String,
    kind: String,
    #[serde(default)]
    providers: Vec<ProviderEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProviderEntry {
    name: String,
    #[serde(default)]
    match_images: Vec<String>,
    default_cache_duration: Option<String>,
    api_version: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<EnvVar>,
    #[serde(default)]
    token_attributes: Option<TokenAttributes>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvVar {
    name: String,
    value: String,
}

/// How the provider wants a ServiceAccount token (KEP-4412), as the kubelet config states it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenAttributes {
    pub service_account_token_audience: String,
    #[serde(default)]
    pub require_service_account: Option<bool>,
    #[serde(default)]
    pub required_service_account_annotation_keys: Vec<String>,
    #[serde(default)]
    pub optional_service_account_annotation_keys: Vec<String>,
    /// Read for compatibility with kubelet configs; the operator mints once per credential.
    #[serde(default)]
    pub cache_type: Option<String>,
}

/// One provider, checked: a plugin file name in the plugin directory, never a path. `Debug`
/// names the environment's variables, never their values (an administrator may put a key there).
#[derive(Clone, PartialEq, Eq)]
pub struct Provider {
    pub name: String,
    pub plugin: PathBuf,
    pub match_images: Vec<String>,
    pub default_cache_duration: Duration,
    pub args: Vec<String>,
    /// The plugin's whole environment: nothing of the operator's own is passed on.
    pub env: BTreeMap<String, String>,
    pub token_attributes: Option<TokenAttributes>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("plugin", &self.plugin)
            .field("match_images", &self.match_images)
            .field("default_cache_duration", &self.default_cache_duration)
            .field("args", &self.args.len())
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("token_attributes", &self.token_attributes)
            .finish()
    }
}

impl Provider {
    /// Whether the kubelet would ask this provider about `image` (its `matchImages`).
    pub fn matches(&self, image: &ImageReference) -> bool {
        self.match_images.iter().any(|pattern| key_matches_image(pattern, image))
    }
}

/// The providers by name, and how long one run may take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Providers {
    pub by_name: BTreeMap<String, Provider>,
    pub timeout: Duration,
    /// Whether the operator was given a config file at all.
    pub configured: bool,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("credential provider config {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("credential provider config {path}: {message}")]
    Invalid { path: String, message: String },
}

impl Providers {
    /// Reads the config file (YAML or JSON) and checks every provider as the kubelet does, so a
    /// file that works for the kubelet works here and one it refuses is refused at start.
    pub fn load(config: &Path, plugin_dir: &Path, timeout: Duration) -> Result<Providers, ConfigError> {
        let path = config.display().to_string();
        let text =
            std::fs::read_to_string(config).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
        Providers::parse(&text, plugin_dir, timeout).map_err(|message| ConfigError::Invalid { path, message })
    }

    pub fn parse(text: &str, plugin_dir: &Path, timeout: Duration) -> Result<Providers, String> {
        let file: ConfigFile = serde_norway::from_str(text).map_err(|error| error.to_string())?;
        if !CONFIG_API_VERSIONS.contains(&file.api_version.as_str()) || file.kind != "CredentialProviderConfig" {
            return Err(format!("apiVersion/kind must be {} CredentialProviderConfig", CONFIG_API_VERSIONS[0]));
        }
        let mut by_name = BTreeMap::new();
        for (index, entry) in file.providers.into_iter().enumerate() {
            let provider = check(entry, plugin_dir).map_err(|message| format!("providers[{index}]: {message}"))?;
            if by_name.contains_key(&provider.name) {
                return Err(format!("providers[{index}]: name {:?} is listed twice", provider.name));
            }
            by_name.insert(provider.name.clone(), provider);
        }
        Ok(Providers { by_name, timeout, configured: true })
    }
}

fn check(entry: ProviderEntry, plugin_dir: &Path) -> Result<Provider, String> {
    let name = entry.name;
    // The name is a file in the plugin directory, as the kubelet requires: no path can escape it.
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(format!("name {name:?} must be a file name in the plugin directory"));
    }
    if entry.api_version != PROTOCOL_API_VERSION {
        return Err(format!("{name}: apiVersion must be {PROTOCOL_API_VERSION}"));
    }
    if entry.match_images.is_empty() {
        return Err(format!("{name}: matchImages must not be empty"));
    }
    let default_cache_duration = entry
        .default_cache_duration
        .as_deref()
        .and_then(parse_go_duration)
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| format!("{name}: defaultCacheDuration must be a duration above zero, such as 12h"))?;
    if let Some(attributes) = &entry.token_attributes
        && attributes.service_account_token_audience.is_empty()
    {
        return Err(format!("{name}: tokenAttributes.serviceAccountTokenAudience must not be empty"));
    }
    let env = entry.env.into_iter().map(|var| (var.name, var.value)).collect();
    Ok(Provider {
        plugin: plugin_dir.join(&name),
        name,
        match_images: entry.match_images,
        default_cache_duration,
        args: entry.args,
        env,
        token_attributes: entry.token_attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(30);

    fn parse(text: &str) -> Result<Providers, String> {
        Providers::parse(text, Path::new("/plugins"), TIMEOUT)
    }

    #[test]
    fn a_kubelet_config_is_read_with_its_token_attributes() {
        let providers = parse(
            r#"
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: ecr-credential-provider
    matchImages: ["*.dkr.ecr.*.amazonaws.com"]
    defaultCacheDuration: 12h
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    args: [get-credentials]
    env: [{name: AWS_REGION, value: us-east-1}]
    tokenAttributes:
      serviceAccountTokenAudience: sts.amazonaws.com
      requireServiceAccount: true
      requiredServiceAccountAnnotationKeys: [eks.amazonaws.com/ecr-role-arn]
      cacheType: ServiceAccount
"#,
        )
        .unwrap();
        let provider = &providers.by_name["ecr-credential-provider"];
        assert_eq!(provider.plugin, Path::new("/plugins/ecr-credential-provider"));
        assert_eq!(provider.default_cache_duration, Duration::from_secs(12 * 3600));
        assert_eq!(provider.env.get("AWS_REGION").map(String::as_str), Some("us-east-1"));
        let attributes = provider.token_attributes.as_ref().unwrap();
        assert_eq!(attributes.service_account_token_audience, "sts.amazonaws.com");
        assert!(!format!("{providers:?}").contains("us-east-1"), "an env value in Debug");
        let ecr = ImageReference::parse("111122223333.dkr.ecr.eu-west-1.amazonaws.com/app:1").unwrap();
        assert!(provider.matches(&ecr));
        assert!(!provider.matches(&ImageReference::parse("quay.io/org/app").unwrap()));
    }

    #[test]
    fn a_provider_name_can_never_be_a_path_out_of_the_plugin_directory() {
        for name in ["../bin/sh", "/bin/sh", "..", ".", "", "a\\b"] {
            let text = format!(
                "{{apiVersion: kubelet.config.k8s.io/v1, kind: CredentialProviderConfig, providers: [{{name: {name:?}, \
                 matchImages: [x.io], defaultCacheDuration: 1h, apiVersion: {PROTOCOL_API_VERSION}}}]}}"
            );
            let error = parse(&text).unwrap_err();
            assert!(error.contains("must be a file name"), "{name:?}: {error}");
        }
    }

    #[test]
    fn what_the_kubelet_refuses_is_refused_naming_the_provider() {
        let provider = |fields: &str| {
            format!(
                "{{apiVersion: kubelet.config.k8s.io/v1, kind: CredentialProviderConfig, providers: [{{name: p, {fields}}}]}}"
            )
        };
        let v1 = PROTOCOL_API_VERSION;
        for (fields, expected) in [
            (
                "matchImages: [x.io], defaultCacheDuration: 1h, apiVersion: credentialprovider.kubelet.k8s.io/v1beta1",
                "apiVersion",
            ),
            (&format!("matchImages: [], defaultCacheDuration: 1h, apiVersion: {v1}"), "matchImages"),
            (&format!("matchImages: [x.io], defaultCacheDuration: 0s, apiVersion: {v1}"), "defaultCacheDuration"),
            (&format!("matchImages: [x.io], apiVersion: {v1}"), "defaultCacheDuration"),
            (
                &format!(
                    "matchImages: [x.io], defaultCacheDuration: 1h, apiVersion: {v1}, tokenAttributes: {{serviceAccountTokenAudience: ''}}"
                ),
                "serviceAccountTokenAudience",
            ),
        ] {
            let error = parse(&provider(fields)).unwrap_err();
            assert!(error.starts_with("providers[0]: p: ") && error.contains(expected), "{fields}: {error}");
        }
        let twice = format!(
            "{{apiVersion: kubelet.config.k8s.io/v1, kind: CredentialProviderConfig, providers: [\
             {{name: p, matchImages: [x.io], defaultCacheDuration: 1h, apiVersion: {v1}}},\
             {{name: p, matchImages: [x.io], defaultCacheDuration: 1h, apiVersion: {v1}}}]}}"
        );
        assert!(parse(&twice).unwrap_err().contains("listed twice"));
        assert!(parse("{apiVersion: v1, kind: ConfigMap}").unwrap_err().contains("CredentialProviderConfig"));
        let misspelt = format!(
            "{{apiVersion: kubelet.config.k8s.io/v1, kind: CredentialProviderConfig, providers: [{{name: p, \
             matchImages: [x.io], defaultCacheDuration: 1h, apiVersion: {v1}, \
             tokenAttributes: {{serviceAccountTokenAudience: a, requireServiceAcount: true}}}}]}}"
        );
        assert!(parse(&misspelt).unwrap_err().contains("requireServiceAcount"), "a typo is refused");
    }
}
