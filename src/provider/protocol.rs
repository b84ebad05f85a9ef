//! The kubelet's image credential provider exec protocol, `credentialprovider.kubelet.k8s.io/v1`:
//! a `CredentialProviderRequest` on the plugin's stdin, a `CredentialProviderResponse` on its
//! stdout. Pure.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The only protocol version spoken, as the kubelet's v1 config requires.
pub const PROTOCOL_API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";

/// What the plugin reads on stdin.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialProviderRequest<'a> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub image: &'a str,
    /// A ServiceAccount token for the provider's audience (KEP-4412); a credential, never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account_token: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub service_account_annotations: BTreeMap<String, String>,
}

impl<'a> CredentialProviderRequest<'a> {
    pub fn new(image: &'a str) -> Self {
        CredentialProviderRequest {
            api_version: PROTOCOL_API_VERSION,
            kind: "CredentialProviderRequest",
            image,
            service_account_token: None,
            service_account_annotations: BTreeMap::new(),
        }
    }
}

/// What the plugin writes on stdout. Field names are matched as Go's `encoding/json` would
/// (case-insensitively) by the kubelet; plugins write them in camelCase, and so are they read here.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialProviderResponse {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub cache_duration: Option<String>,
    #[serde(default)]
    pub auth: BTreeMap<String, AuthConfig>,
}

/// One entry of the response's `auth` map. `Debug` never shows the password.
#[derive(Deserialize, Serialize)]
pub struct AuthConfig {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
}

/// Why a response cannot be used; the messages never quote a value of the response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseProblem {
    #[error("stdout is not a CredentialProviderResponse ({0})")]
    NotAResponse(String),
    #[error("the response's apiVersion/kind is not {PROTOCOL_API_VERSION} CredentialProviderResponse")]
    WrongKind,
    #[error("cacheDuration is not a duration such as 6h or 30m")]
    BadCacheDuration,
    #[error("the response holds no auth entry")]
    NoAuth,
    #[error("the credential it answered has expired already (its password's exp)")]
    AlreadyExpired,
}

impl CredentialProviderResponse {
    /// Reads stdout; the message of a parse error names the place, never the text.
    pub fn parse(stdout: &[u8]) -> Result<CredentialProviderResponse, ResponseProblem> {
        let response: CredentialProviderResponse = serde_json::from_slice(stdout).map_err(|error| {
            ResponseProblem::NotAResponse(format!(
                "{:?} at line {} column {}",
                error.classify(),
                error.line(),
                error.column()
            ))
        })?;
        if response.api_version != PROTOCOL_API_VERSION || response.kind != "CredentialProviderResponse" {
            return Err(ResponseProblem::WrongKind);
        }
        if response.auth.is_empty() {
            return Err(ResponseProblem::NoAuth);
        }
        Ok(response)
    }

    /// `cacheDuration`, when the plugin gave one; zero means "do not cache" to the kubelet and is
    /// read as not given (the provider's default applies).
    pub fn cache_duration(&self) -> Result<Option<Duration>, ResponseProblem> {
        match self.cache_duration.as_deref() {
            None | Some("") => Ok(None),
            Some(text) => parse_go_duration(text)
                .map(|d| Some(d).filter(|d| !d.is_zero()))
                .ok_or(ResponseProblem::BadCacheDuration),
        }
    }

    /// The entries of the auth map that `keep` keeps, as a docker config (`{"auths": {...}}`),
    /// for the normalizer to judge.
    pub fn docker_config_json(&self, keep: impl Fn(&str, &AuthConfig) -> bool) -> Vec<u8> {
        let auths: BTreeMap<&str, &AuthConfig> =
            self.auth.iter().filter(|(key, auth)| keep(key, auth)).map(|(key, auth)| (key.as_str(), auth)).collect();
        serde_json::to_vec(&serde_json::json!({ "auths": auths })).expect("a map of strings serializes")
    }
}

/// A Go `time.Duration` string (`metav1.Duration`): `1h30m`, `8s`, `1.5h`, `300ms`, `0`. Negative
/// durations and unknown units are refused.
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    if text.is_empty() {
        return None;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_are_read_as_go_writes_them() {
        let secs = |s: u64| Some(Duration::from_secs(s));
        assert_eq!(parse_go_duration("6h0m0s"), secs(6 * 3600));
        assert_eq!(parse_go_duration("1h30m"), secs(5400));
        assert_eq!(parse_go_duration("8s"), secs(8));
        assert_eq!(parse_go_duration("1.5h"), secs(5400));
        assert_eq!(parse_go_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        for bad in ["", "-5s", "5", "5d", "h", "1h 2m", "1.2.3s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_response_is_checked_for_its_kind_and_its_auth() {
        let ok = br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse",
            "cacheKeyType":"Registry","cacheDuration":"30m","auth":{"r.example":{"username":"u","password":"p"}}}"#;
        let response = CredentialProviderResponse::parse(ok).unwrap();
        assert_eq!(response.cache_duration(), Ok(Some(Duration::from_secs(1800))));
        let config: serde_json::Value = serde_json::from_slice(&response.docker_config_json(|_, _| true)).unwrap();
        assert_eq!(config["auths"]["r.example"]["username"], "u");

        let v1beta1 = br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1beta1","kind":"CredentialProviderResponse","auth":{"r":{}}}"#;
        assert_eq!(CredentialProviderResponse::parse(v1beta1).err(), Some(ResponseProblem::WrongKind));
        let empty = br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse"}"#;
        assert_eq!(CredentialProviderResponse::parse(empty).err(), Some(ResponseProblem::NoAuth));
    }

    #[test]
    fn a_garbled_response_is_described_without_its_text() {
        let garbage = b"{\"apiVersion\": \"hunter2-secret";
        let problem = CredentialProviderResponse::parse(garbage).err().unwrap().to_string();
        assert!(problem.contains("line 1"), "{problem}");
        assert!(!problem.contains("hunter2"), "{problem}");
    }
}
