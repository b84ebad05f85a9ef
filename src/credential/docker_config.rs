//! Parsing, validation and canonical output of docker config JSON (`.dockerconfigjson` with its
//! `auths` wrapper, or the legacy `.dockercfg` map).
//!
//! The kubelet reads `username`, `password` and `auth` of each entry, and when `auth` is set it
//! wins over the other two (`DockerConfigEntry.UnmarshalJSON`). Every other field is ignored by it,
//! so the canonical output keeps exactly those three, with `auth` recomputed.
//!
//! The input is read as Go's `encoding/json` reads it into the kubelet's structs: field names match
//! case-insensitively (`Auths`, `Username`, `AUTH`; Go's folding also takes `ſ` for `s`), a
//! repeated `auths` object is merged into the first, a repeated field or key keeps its last value,
//! and `null` leaves a field unset. `auth` is decoded as Go's standard base64 decoders do: line
//! breaks ignored, unused trailing bits accepted.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use serde::de::{self, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize};
use thiserror::Error;

use super::registry_key::{KeyProblem, KeyWarning, normalize_registry_key, redact_key};

/// One registry's credentials. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    username: String,
    password: String,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RegistryAuth { .. }")
    }
}

/// A valid docker config in canonical form: canonical registry keys, each with credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerConfig {
    auths: BTreeMap<String, RegistryAuth>,
}

/// A key that normalization rewrote; safe to show (keys are not secret, user info is refused).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KeyRewrite {
    /// The key as written in the source.
    pub from: String,
    /// The canonical key it became.
    pub to: String,
}

/// The outcome of normalizing a valid config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    pub config: DockerConfig,
    /// Keys that were rewritten, sorted.
    pub rewrites: Vec<KeyRewrite>,
    pub warnings: Vec<ConfigWarning>,
}

/// Legal input worth telling a person about.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigWarning {
    #[error("entry {key:?}: {warning}")]
    Key { key: String, warning: KeyWarning },
    #[error("entry {key:?}: field `{field}` is ignored by the kubelet and dropped")]
    IgnoredField { key: String, field: String },
    #[error("`{setting}` is ignored by the kubelet: only `auths` entries are used for pulls")]
    IgnoredSetting { setting: String },
    #[error("entries {keys:?} are the same registry with the same credentials and were merged into {to:?}")]
    Merged { keys: Vec<String>, to: String },
    #[error(
        "entry {key:?}: kept as {kept:?} beside the canonical {canonical:?}: the kubelet matches {kept:?} only for images that name the registry exactly so"
    )]
    KeptBeside { key: String, kept: String, canonical: String },
}

/// One reason a config is invalid. Messages name the entry and the field, never a value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigProblem {
    #[error("not valid JSON: {0}")]
    NotJson(String),
    #[error("the top level must be a JSON object")]
    NotAnObject,
    #[error("`auths` must be a JSON object mapping registries to credentials")]
    AuthsNotAnObject,
    #[error("no registry entries: the kubelet would pull anonymously")]
    NoEntries,
    #[error("entry {key:?}: must be a JSON object with `username` and `password` or `auth`")]
    EntryNotAnObject { key: String },
    #[error("entry {key:?}: field `{field}` must be a string")]
    FieldNotAString { key: String, field: &'static str },
    #[error("entry {key:?}: {problem}")]
    InvalidKey { key: String, problem: KeyProblem },
    #[error(
        "entry {key:?}: no credentials (set `username` and `password`, or `auth`); the kubelet would pull anonymously"
    )]
    NoCredentials { key: String },
    #[error("entry {key:?}: `{field}` is empty; the kubelet would not authenticate")]
    EmptyField { key: String, field: &'static str },
    #[error("entry {key:?}: `auth` is not valid base64")]
    AuthNotBase64 { key: String },
    #[error("entry {key:?}: `auth` does not decode to UTF-8 text")]
    AuthNotUtf8 { key: String },
    #[error("entry {key:?}: `auth` does not decode to `username:password`")]
    AuthNotUserPassword { key: String },
    #[error("entry {key:?}: `auth` disagrees with `{field}`; the kubelet would use `auth`")]
    AuthDisagrees { key: String, field: &'static str },
    #[error("entry {key:?}: `username` contains `:`, which `auth` cannot encode")]
    UsernameHasColon { key: String },
    #[error("entries {first:?} and {second:?} are the same registry {canonical:?} with different credentials")]
    ConflictingDuplicates { first: String, second: String, canonical: String },
}

/// Every reason a config was refused, in input order.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid docker config: {}", join_problems(.problems))]
pub struct InvalidDockerConfig {
    pub problems: Vec<ConfigProblem>,
}

fn join_problems(problems: &[ConfigProblem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl From<ConfigProblem> for InvalidDockerConfig {
    fn from(problem: ConfigProblem) -> Self {
        InvalidDockerConfig { problems: vec![problem] }
    }
}

/// A JSON value as far as the kubelet's structs look into it: objects keep every member in document
/// order, duplicates included (Go's decoder sees them all). It holds passwords: no `Debug`.
#[derive(Clone, PartialEq)]
enum Json {
    Null,
    String(String),
    Object(Vec<(String, Json)>),
    /// A number, a boolean or an array: never what the kubelet reads.
    Other,
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Json;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_str<E>(self, value: &str) -> Result<Json, E> {
                Ok(Json::String(value.to_owned()))
            }
            fn visit_string<E>(self, value: String) -> Result<Json, E> {
                Ok(Json::String(value))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Json::Other)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Json>()? {
                    members.push(member);
                }
                Ok(Json::Object(members))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Whether a JSON member name selects the Go struct field tagged `field` (lowercase ASCII):
/// `encoding/json` accepts any name equal under Unicode case folding, where `ſ` folds to `s` and
/// the Kelvin sign to `k`.
fn names_field(name: &str, field: &str) -> bool {
    let folded = name.chars().map(|c| match c {
        '\u{17f}' => 's',
        '\u{212a}' => 'k',
        c => c.to_ascii_lowercase(),
    });
    folded.eq(field.chars())
}

/// Parses docker config JSON in either form and normalizes it.
pub fn normalize_docker_config(input: &[u8]) -> Result<Normalized, InvalidDockerConfig> {
    // Syntax errors only report a position: no part of the input is quoted.
    let value: Json = serde_json::from_slice(input).map_err(|e| ConfigProblem::NotJson(syntax_error(&e)))?;
    let Json::Object(top) = value else {
        return Err(ConfigProblem::NotAnObject.into());
    };
    let mut warnings = Vec::new();
    let has = |setting: &str| top.iter().any(|(name, _)| name == setting);
    let has_auths = top.iter().any(|(name, _)| names_field(name, "auths"));
    if !has_auths && (has("credsStore") || has("credHelpers")) {
        return Err(ConfigProblem::NoEntries.into());
    }
    if has_auths {
        for setting in ["credsStore", "credHelpers"] {
            if has(setting) {
                warnings.push(ConfigWarning::IgnoredSetting { setting: setting.to_owned() });
            }
        }
    }
    let entries = entries(&top, !has_auths).ok_or(ConfigProblem::AuthsNotAnObject)?;
    build(entries.into_iter(), warnings)
}

/// The registry entries the kubelet reads, in document order: `auths` members (every member whose
/// name folds to `auths`, merged, as Go decodes them into one map), or the top level of a legacy
/// `.dockercfg`; a key given twice keeps its last value. `None` when an `auths` is not an object.
fn entries(top: &[(String, Json)], legacy: bool) -> Option<Vec<(&str, &Json)>> {
    let mut entries: Vec<(&str, &Json)> = Vec::new();
    if legacy {
        entries.extend(top.iter().map(|(key, value)| (key.as_str(), value)));
    } else {
        for (_, value) in top.iter().filter(|(name, _)| names_field(name, "auths")) {
            match value {
                Json::Object(members) => entries.extend(members.iter().map(|(key, value)| (key.as_str(), value))),
                Json::Null => {}
                _ => return None,
            }
        }
    }
    let mut last: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, (key, _)) in entries.iter().enumerate() {
        last.insert(key, i);
    }
    Some(entries.iter().enumerate().filter(|(i, (key, _))| last[key] == *i).map(|(_, entry)| *entry).collect())
}

/// The registry keys of a docker config as written and as the kubelet reads them (see
/// [`normalize_docker_config`]): from `auths` in a `.dockerconfigjson`, from the top level in a
/// legacy `.dockercfg`. `None` when the JSON does not parse into that shape.
pub fn written_registry_keys(input: &[u8], legacy: bool) -> Option<Vec<String>> {
    let Json::Object(top) = serde_json::from_slice(input).ok()? else { return None };
    Some(entries(&top, legacy)?.into_iter().map(|(key, _)| key.to_owned()).collect())
}

/// Builds a config for `registries` from a username and password (a basic-auth source Secret).
pub fn docker_config_from_basic_auth(
    registries: &[String],
    username: &str,
    password: &str,
) -> Result<Normalized, InvalidDockerConfig> {
    let entry = Json::Object(vec![
        ("username".to_owned(), Json::String(username.to_owned())),
        ("password".to_owned(), Json::String(password.to_owned())),
    ]);
    let raw_entries = registries.iter().map(|registry| (registry.as_str(), &entry));
    build(raw_entries, Vec::new())
}

fn build<'a>(
    raw_entries: impl Iterator<Item = (&'a str, &'a Json)>,
    warnings: Vec<ConfigWarning>,
) -> Result<Normalized, InvalidDockerConfig> {
    let mut merge = Merge { warnings, ..Merge::default() };
    for (raw_key, value) in raw_entries {
        merge.add(raw_key, value);
    }
    merge.finish()
}

/// Entries filed under their canonical keys as they are read, with what reading them found.
#[derive(Default)]
struct Merge {
    problems: Vec<ConfigProblem>,
    warnings: Vec<ConfigWarning>,
    /// Canonical key -> (raw keys that produced it, credentials).
    merged: BTreeMap<String, (Vec<String>, RegistryAuth)>,
    /// Keys as written (trimmed).
    written: std::collections::BTreeSet<String>,
    /// Spellings kept beside a canonical key: (entry, kept, canonical).
    kept_beside: Vec<(String, String, String)>,
}

impl Merge {
    fn add(&mut self, raw_key: &str, value: &Json) {
        let shown = raw_key.trim().to_owned();
        self.written.insert(shown.clone());
        let key = normalize_registry_key(raw_key);
        // Messages name the entry redacted: a rejected key may carry a token.
        let named = redact_key(&shown);
        let auth = parse_entry(&named, value, &mut self.warnings);
        let (key, auth) = match (key, auth) {
            (Ok(key), Ok(auth)) => (key, auth),
            (key, auth) => {
                if let Err(problem) = key {
                    self.problems.push(ConfigProblem::InvalidKey { key: named.clone(), problem });
                }
                self.problems.extend(auth.err());
                return;
            }
        };
        for warning in key.warnings {
            self.warnings.push(ConfigWarning::Key { key: shown.clone(), warning });
        }
        if let Some(kept) = &key.kept {
            self.kept_beside.push((shown.clone(), kept.clone(), key.canonical.clone()));
        }
        for filed in std::iter::once(key.canonical).chain(key.kept) {
            self.file(filed, &shown, &auth);
        }
    }

    /// Files `auth` from the entry `shown` under `filed`; another credential there is a conflict.
    fn file(&mut self, filed: String, shown: &str, auth: &RegistryAuth) {
        match self.merged.get_mut(&filed) {
            Some((sources, existing)) if existing == auth => {
                if !sources.iter().any(|s| s == shown) {
                    sources.push(shown.to_owned());
                }
            }
            Some((sources, _)) => self.problems.push(ConfigProblem::ConflictingDuplicates {
                first: sources[0].clone(),
                second: shown.to_owned(),
                canonical: filed,
            }),
            None => {
                self.merged.insert(filed, (vec![shown.to_owned()], auth.clone()));
            }
        }
    }

    fn finish(mut self) -> Result<Normalized, InvalidDockerConfig> {
        if !self.problems.is_empty() {
            return Err(InvalidDockerConfig { problems: self.problems });
        }
        if self.merged.is_empty() {
            return Err(ConfigProblem::NoEntries.into());
        }
        // Already normalized input (a kept spelling with its canonical key beside it) is left as
        // it is: nothing to report, so that normalizing twice changes nothing.
        for (key, kept, canonical) in std::mem::take(&mut self.kept_beside) {
            if !self.written.contains(&canonical) {
                self.warnings.push(ConfigWarning::KeptBeside { key, kept, canonical });
            }
        }
        let mut rewrites = Vec::new();
        for (filed, (sources, _)) in &self.merged {
            // A source that is itself in the output was not merged away.
            let gone = |source: &String| source == filed || !self.merged.contains_key(source);
            let merged_here: Vec<String> = sources.iter().filter(|s| gone(s)).cloned().collect();
            if merged_here.len() > 1 {
                self.warnings.push(ConfigWarning::Merged { keys: merged_here, to: filed.clone() });
            }
            // Rewritten: a source that is gone, or a kept one whose canonical key is new.
            rewrites.extend(
                sources
                    .iter()
                    .filter(|from| {
                        *from != filed && (!self.merged.contains_key(*from) || !self.written.contains(filed))
                    })
                    .map(|from| KeyRewrite { from: from.clone(), to: filed.clone() }),
            );
        }
        let auths = self.merged.into_iter().map(|(filed, (_, auth))| (filed, auth)).collect();
        rewrites.sort();
        Ok(Normalized { config: DockerConfig { auths }, rewrites, warnings: self.warnings })
    }
}

/// The fields of one entry that the kubelet reads, resolved to a username and password.
fn parse_entry(key: &str, value: &Json, warnings: &mut Vec<ConfigWarning>) -> Result<RegistryAuth, ConfigProblem> {
    let Json::Object(fields) = value else {
        return Err(ConfigProblem::EntryNotAnObject { key: key.to_owned() });
    };
    let (mut username, mut password, mut auth) = (None, None, None);
    for (name, value) in fields {
        let (field, slot) = if names_field(name, "username") {
            ("username", &mut username)
        } else if names_field(name, "password") {
            ("password", &mut password)
        } else if names_field(name, "auth") {
            ("auth", &mut auth)
        } else {
            // `email` was required by old docker clients and is harmless; tokens are the surprise.
            if !names_field(name, "email") {
                warnings.push(ConfigWarning::IgnoredField { key: key.to_owned(), field: name.clone() });
            }
            continue;
        };
        match value {
            // Go leaves a field untouched by `null`; a repeated field keeps its last value.
            Json::Null => {}
            Json::String(text) => *slot = Some(text.as_str()),
            _ => return Err(ConfigProblem::FieldNotAString { key: key.to_owned(), field }),
        }
    }
    let auth = auth.filter(|auth| !auth.is_empty());
    let (username, password) = match auth {
        Some(auth) => {
            let (decoded_user, decoded_password) = decode_auth(key, auth)?;
            for (field, given, decoded) in
                [("username", username, &decoded_user), ("password", password, &decoded_password)]
            {
                if given.is_some_and(|given| !given.is_empty() && given != decoded) {
                    return Err(ConfigProblem::AuthDisagrees { key: key.to_owned(), field });
                }
            }
            (decoded_user, decoded_password)
        }
        None => (username.unwrap_or_default().to_owned(), password.unwrap_or_default().to_owned()),
    };
    match (username.is_empty(), password.is_empty()) {
        (true, true) => Err(ConfigProblem::NoCredentials { key: key.to_owned() }),
        (true, false) => Err(ConfigProblem::EmptyField { key: key.to_owned(), field: "username" }),
        (false, true) => Err(ConfigProblem::EmptyField { key: key.to_owned(), field: "password" }),
        _ if username.contains(':') => Err(ConfigProblem::UsernameHasColon { key: key.to_owned() }),
        _ => Ok(RegistryAuth { username, password }),
    }
}

/// Go's `base64.StdEncoding` and `RawStdEncoding`: unused trailing bits are not checked.
const GO_PADDED: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);
const GO_UNPADDED: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// Decodes `auth` the way the kubelet does: padded standard base64 of `user:password` when it ends
/// with `=`, unpadded otherwise; line breaks are skipped as Go's decoder skips them. Surrounding
/// spaces, which Go refuses, are trimmed: the value is unambiguous without them.
fn decode_auth(key: &str, auth: &str) -> Result<(String, String), ConfigProblem> {
    let auth: String = auth.trim().chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    let engine = if auth.ends_with('=') { &GO_PADDED } else { &GO_UNPADDED };
    let bytes = engine.decode(&auth).map_err(|_| ConfigProblem::AuthNotBase64 { key: key.to_owned() })?;
    let text = String::from_utf8(bytes).map_err(|_| ConfigProblem::AuthNotUtf8 { key: key.to_owned() })?;
    let (username, password) =
        text.split_once(':').ok_or_else(|| ConfigProblem::AuthNotUserPassword { key: key.to_owned() })?;
    Ok((username.to_owned(), password.to_owned()))
}

/// A serde_json syntax error without any quoted input: its category and position.
fn syntax_error(error: &serde_json::Error) -> String {
    let what = match error.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Io => "unreadable input",
        serde_json::error::Category::Syntax | serde_json::error::Category::Data => "syntax error",
    };
    format!("{what} at line {} column {}", error.line(), error.column())
}

impl DockerConfig {
    /// Canonical registry keys, sorted.
    pub fn registries(&self) -> impl Iterator<Item = &str> {
        self.auths.keys().map(String::as_str)
    }

    /// Keeps only the entries whose canonical key is in `allowed` (already canonical); a key kept
    /// beside its canonical form goes with it, and a trailing slash after a path does not count.
    pub fn retain_registries(&mut self, allowed: &[String]) {
        let scope = |key: &str| key.trim_end_matches('/').to_owned();
        let allowed: Vec<String> = allowed.iter().map(|a| scope(a)).collect();
        self.auths.retain(|key, _| {
            let canonical = normalize_registry_key(key).map_or_else(|_| key.clone(), |k| k.canonical);
            allowed.contains(&scope(&canonical))
        });
    }

    pub fn is_empty(&self) -> bool {
        self.auths.is_empty()
    }

    /// The earliest `exp` of the passwords that are JWTs, if any is.
    pub fn token_expiry(&self) -> Option<jiff::Timestamp> {
        self.auths.values().filter_map(|auth| super::expiry::token_expiry(&auth.password)).min()
    }

    /// Canonical JSON: `{"auths":{<key>:{"auth","password","username"}}}`, keys sorted, compact.
    /// Equal configs give byte-equal output, so an unchanged source never rewrites a copy.
    pub fn to_canonical_json(&self) -> String {
        #[derive(Serialize)]
        struct Entry<'a> {
            auth: String,
            password: &'a str,
            username: &'a str,
        }
        #[derive(Serialize)]
        struct Root<'a> {
            auths: BTreeMap<&'a str, Entry<'a>>,
        }
        let auths = self
            .auths
            .iter()
            .map(|(key, auth)| {
                let encoded = STANDARD.encode(format!("{}:{}", auth.username, auth.password));
                (key.as_str(), Entry { auth: encoded, password: &auth.password, username: &auth.username })
            })
            .collect();
        serde_json::to_string(&Root { auths }).expect("a map of strings always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> Normalized {
        normalize_docker_config(input.as_bytes()).expect("valid config")
    }

    fn problems(input: &str) -> Vec<ConfigProblem> {
        normalize_docker_config(input.as_bytes()).expect_err("invalid config").problems
    }

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn seed_article_key_is_normalized() {
        let out = ok(r#"{"auths":{"https://registry.internal.corp/v2/":{"username":"ci","password":"pw"}}}"#);
        assert_eq!(
            out.config.to_canonical_json(),
            format!(
                r#"{{"auths":{{"registry.internal.corp":{{"auth":"{}","password":"pw","username":"ci"}}}}}}"#,
                b64("ci:pw")
            )
        );
        assert_eq!(
            out.rewrites,
            vec![KeyRewrite { from: "https://registry.internal.corp/v2/".into(), to: "registry.internal.corp".into() }]
        );
        assert!(out.warnings.is_empty());
    }

    #[test]
    fn auth_alone_is_decoded_padded_or_not() {
        let padded = b64("user:passw");
        let unpadded = padded.trim_end_matches('=');
        assert_ne!(padded, unpadded, "test needs a padded value");
        for auth in [padded.as_str(), unpadded] {
            let out = ok(&format!(r#"{{"auths":{{"quay.io":{{"auth":"{auth}"}}}}}}"#));
            assert_eq!(out.config.auths["quay.io"], RegistryAuth { username: "user".into(), password: "passw".into() });
        }
    }

    #[test]
    fn password_may_contain_colons() {
        let out = ok(&format!(r#"{{"auths":{{"quay.io":{{"auth":"{}"}}}}}}"#, b64("user:pa:ss")));
        assert_eq!(out.config.auths["quay.io"].password, "pa:ss");
    }

    #[test]
    fn legacy_dockercfg_is_accepted() {
        let out = ok(r#"{"https://index.docker.io/v1/":{"username":"u","password":"p","email":"u@example.com"}}"#);
        assert_eq!(out.config.registries().collect::<Vec<_>>(), vec!["docker.io"]);
        assert!(out.warnings.is_empty(), "email is silently dropped: {:?}", out.warnings);
    }

    #[test]
    fn agreeing_auth_and_fields_are_accepted() {
        let input = format!(r#"{{"auths":{{"quay.io":{{"username":"u","password":"p","auth":"{}"}}}}}}"#, b64("u:p"));
        assert_eq!(ok(&input).config.auths.len(), 1);
    }

    #[test]
    fn duplicates_with_equal_credentials_merge() {
        let out = ok(r#"{"auths":{
            "https://registry.corp/v2/":{"username":"u","password":"p"},
            "registry.corp":{"username":"u","password":"p"}}}"#);
        assert_eq!(out.config.registries().collect::<Vec<_>>(), vec!["registry.corp"]);
        assert!(matches!(&out.warnings[..], [ConfigWarning::Merged { to, .. }] if to == "registry.corp"));
    }

    #[test]
    fn warnings_are_values() {
        let out = ok(r#"{"credsStore":"desktop","auths":{
            "http://registry.lan":{"username":"u","password":"p","identitytoken":"t"},
            "*.example.com":{"username":"u","password":"p"}}}"#);
        let shown: Vec<String> = out.warnings.iter().map(ToString::to_string).collect();
        assert!(shown.iter().any(|w| w.contains("credsStore")), "{shown:?}");
        assert!(shown.iter().any(|w| w.contains("identitytoken")), "{shown:?}");
        assert!(shown.iter().any(|w| w.contains("plain-http")), "{shown:?}");
        assert!(shown.iter().any(|w| w.contains("wildcard")), "{shown:?}");
    }

    #[test]
    fn every_rejection_of_the_document_says_what_is_wrong() {
        let cases: Vec<(&str, ConfigProblem)> = vec![
            ("not json", ConfigProblem::NotJson("syntax error at line 1 column 2".into())),
            ("{", ConfigProblem::NotJson("unexpected end of input at line 1 column 1".into())),
            ("[]", ConfigProblem::NotAnObject),
            (r#"{"auths":[]}"#, ConfigProblem::AuthsNotAnObject),
            (r#"{"auths":{}}"#, ConfigProblem::NoEntries),
            ("{}", ConfigProblem::NoEntries),
            (r#"{"credsStore":"desktop"}"#, ConfigProblem::NoEntries),
        ];
        for (input, expected) in cases {
            assert_eq!(problems(input), vec![expected], "{input}");
        }
    }

    #[test]
    fn every_rejection_names_its_entry() {
        let cases: Vec<(String, ConfigProblem)> = vec![
            (r#"{"auths":{"quay.io":"x"}}"#.into(), ConfigProblem::EntryNotAnObject { key: "quay.io".into() }),
            (
                r#"{"auths":{"quay.io":{"username":1,"password":"p"}}}"#.into(),
                ConfigProblem::FieldNotAString { key: "quay.io".into(), field: "username" },
            ),
            (r#"{"auths":{"quay.io":{}}}"#.into(), ConfigProblem::NoCredentials { key: "quay.io".into() }),
            (
                r#"{"auths":{"quay.io":{"username":"","password":""}}}"#.into(),
                ConfigProblem::NoCredentials { key: "quay.io".into() },
            ),
            (
                format!(r#"{{"auths":{{"quay.io":{{"auth":"{}"}}}}}}"#, b64(":")),
                ConfigProblem::NoCredentials { key: "quay.io".into() },
            ),
            (
                r#"{"auths":{"quay.io":{"username":"u"}}}"#.into(),
                ConfigProblem::EmptyField { key: "quay.io".into(), field: "password" },
            ),
            (
                r#"{"auths":{"quay.io":{"password":"p"}}}"#.into(),
                ConfigProblem::EmptyField { key: "quay.io".into(), field: "username" },
            ),
            (r#"{"auths":{"quay.io":{"auth":"%%%"}}}"#.into(), ConfigProblem::AuthNotBase64 { key: "quay.io".into() }),
            (
                format!(r#"{{"auths":{{"quay.io":{{"auth":"{}"}}}}}}"#, STANDARD.encode([0xff, 0xfe, b':', b'a'])),
                ConfigProblem::AuthNotUtf8 { key: "quay.io".into() },
            ),
            (
                format!(r#"{{"auths":{{"quay.io":{{"auth":"{}"}}}}}}"#, b64("nocolon")),
                ConfigProblem::AuthNotUserPassword { key: "quay.io".into() },
            ),
            (
                format!(r#"{{"auths":{{"quay.io":{{"auth":"{}","username":"v"}}}}}}"#, b64("u:p")),
                ConfigProblem::AuthDisagrees { key: "quay.io".into(), field: "username" },
            ),
            (
                format!(r#"{{"auths":{{"quay.io":{{"auth":"{}","password":"q"}}}}}}"#, b64("u:p")),
                ConfigProblem::AuthDisagrees { key: "quay.io".into(), field: "password" },
            ),
            (
                r#"{"auths":{"quay.io":{"username":"a:b","password":"p"}}}"#.into(),
                ConfigProblem::UsernameHasColon { key: "quay.io".into() },
            ),
            (
                r#"{"auths":{"bad host":{"username":"u","password":"p"}}}"#.into(),
                ConfigProblem::InvalidKey {
                    key: "bad host".into(),
                    problem: KeyProblem::InvalidHostLabel("bad host".into()),
                },
            ),
            (
                r#"{"auths":{"https://index.docker.io/v1/":{"username":"u","password":"p"},
                             "docker.io":{"username":"u","password":"q"}}}"#
                    .into(),
                ConfigProblem::ConflictingDuplicates {
                    first: "https://index.docker.io/v1/".into(),
                    second: "docker.io".into(),
                    canonical: "docker.io".into(),
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(problems(&input), vec![expected], "{input}");
        }
    }

    #[test]
    fn all_problems_are_reported_together() {
        let found =
            problems(r#"{"auths":{"a.io":{},"ftp://b.io":{"username":"u","password":"p"},"c.io":{"username":"u"}}}"#);
        assert_eq!(found.len(), 3, "{found:?}");
    }

    #[test]
    fn messages_never_contain_credential_values() {
        let secret = "s3cr3t-Value";
        let inputs = [
            format!(r#"{{"auths":{{"quay.io":{{"auth":"{}","password":"{secret}"}}}}}}"#, b64("u:other")),
            format!(r#"{{"auths":{{"quay.io":{{"username":"{secret}:x","password":"{secret}"}}}}}}"#),
            format!(r#"{{"auths":{{"quay.io":{{"username":"u","password":{{"{secret}":1}}}}}}}}"#),
            format!(r#"{{"auths":{{"quay.io":{{"username":"u","password":"{secret}"}}, "x":"{secret}"}}}}"#),
            format!(r#"{{"auths":{{"quay.io":{{"auth":"{secret}"}}}}}}"#),
            format!(r#"{{"auths":{{"quay.io":{{"password":"{secret}" "#),
        ];
        for input in inputs {
            let err = normalize_docker_config(input.as_bytes()).expect_err("invalid");
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(secret), "{shown}");
        }
        let ok = ok(&format!(r#"{{"auths":{{"quay.io":{{"username":"u","password":"{secret}"}}}}}}"#));
        assert!(!format!("{ok:?}").contains(secret));
    }

    #[test]
    fn basic_auth_source_builds_one_entry_per_registry() {
        let out = docker_config_from_basic_auth(&["https://Registry.Corp/v2/".into(), "quay.io/org".into()], "u", "p")
            .unwrap();
        assert_eq!(out.config.registries().collect::<Vec<_>>(), vec!["Registry.Corp", "quay.io/org", "registry.corp"]);
        let empty = docker_config_from_basic_auth(&["quay.io".into()], "u", "").unwrap_err();
        assert_eq!(empty.problems, vec![ConfigProblem::EmptyField { key: "quay.io".into(), field: "password" }]);
        assert_eq!(docker_config_from_basic_auth(&[], "u", "p").unwrap_err().problems, vec![ConfigProblem::NoEntries]);
    }

    #[test]
    fn json_is_read_as_go_reads_it() {
        let auth = b64("u:p");
        // Field names in any case (and Go's folding of `ſ`); a repeated `auths` merged.
        let out = ok(&format!(
            r#"{{"AUTHS":{{"a.io":{{"Auth":"{auth}"}}}},"auth\u017f":{{"b.io":{{"USERNAME":"u","Password":"p"}}}}}}"#
        ));
        assert_eq!(out.config.registries().collect::<Vec<_>>(), vec!["a.io", "b.io"]);
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        // A repeated field keeps its last value; `null` leaves it as it was.
        let out = ok(r#"{"auths":{"a.io":{"username":"x","Username":"u","password":"p","PASSWORD":null}}}"#);
        assert_eq!(out.config.auths["a.io"], RegistryAuth { username: "u".into(), password: "p".into() });
        // A key given twice keeps its last value.
        let out = ok(r#"{"auths":{"a.io":{"username":"x"},"a.io":{"username":"u","password":"p"}}}"#);
        assert_eq!(out.config.auths["a.io"].username, "u");
    }

    #[test]
    fn auth_is_decoded_as_go_decodes_it() {
        let padded = b64("hand1:pw");
        assert!(padded.ends_with("c="), "{padded}");
        let stray_bits = format!("{}d=", &padded[..padded.len() - 2]);
        let wrapped = format!(r"{}\r\n{}\n", &padded[..4], &padded[4..]);
        for auth in [stray_bits.as_str(), wrapped.as_str()] {
            let out = ok(&format!(r#"{{"auths":{{"quay.io":{{"auth":"{auth}"}}}}}}"#));
            assert_eq!(out.config.auths["quay.io"].password, "pw", "{auth}");
        }
    }

    #[test]
    fn a_kept_spelling_is_written_beside_the_canonical_key() {
        let out = ok(r#"{"auths":{"https://Registry.Corp/v2/":{"username":"u","password":"p"}}}"#);
        assert_eq!(out.config.registries().collect::<Vec<_>>(), vec!["Registry.Corp", "registry.corp"]);
        assert!(matches!(&out.warnings[..], [ConfigWarning::KeptBeside { kept, .. }] if kept == "Registry.Corp"));
        // Idempotent: the output normalizes to itself.
        let again = ok(&out.config.to_canonical_json());
        assert_eq!(again.config, out.config);
    }

    #[test]
    fn retain_registries_keeps_the_allow_list() {
        let mut config =
            ok(r#"{"auths":{"a.io":{"username":"u","password":"p"},"b.io":{"username":"u","password":"p"}}}"#).config;
        config.retain_registries(&["b.io".into()]);
        assert_eq!(config.registries().collect::<Vec<_>>(), vec!["b.io"]);
        let mut config =
            ok(r#"{"auths":{"A.io/org/":{"username":"u","password":"p"},"b.io":{"username":"u","password":"p"}}}"#)
                .config;
        config.retain_registries(&["a.io/org".into()]);
        assert_eq!(config.registries().collect::<Vec<_>>(), vec!["A.io/org/", "a.io/org/"]);
    }
}
