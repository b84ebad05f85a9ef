//! Canonical form of one registry key of a docker config (`"https://host/v2/"`, `"quay.io/org/"`).
//!
//! The kubelet (`pkg/credentialprovider`, keyring.go) turns each key into a matcher: it drops the
//! scheme, drops a leading `/v1/` or `/v2/` path segment, and then matches an image when the
//! dot-separated host parts glob-match one by one (case-sensitive), the ports are equal, and the
//! key's path is a string prefix of the image's repository path. Docker Hub images reach it as
//! `docker.io/<repo>`. The canonical key written here is the one that makes the kubelet match
//! exactly the images the key's author meant; where the key as written matches images that the
//! canonical one cannot (a host in upper case, a Docker Hub alias that images name literally), that
//! spelling is kept beside it (`RegistryKey::kept`). Checked against the kubelet's own code by
//! tests/kubelet_differential.rs.

use std::fmt;

use thiserror::Error;

/// The host every Docker Hub image carries once the kubelet has normalized the image name.
pub const DOCKER_HUB: &str = "docker.io";

/// Other names of Docker Hub that the kubelet would never match against `docker.io/...` images
/// (except `index.docker.io` without a path, which it special-cases; with a path it fails too).
const DOCKER_HUB_ALIASES: &[&str] = &["index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"];

/// A registry key in canonical form, with what is worth warning about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryKey {
    /// `host[:port][/repository/path[/]]`: host lowercased (Docker Hub's names as `docker.io`), no
    /// scheme, no API suffix; a trailing slash only after a repository path, where it was written
    /// (the kubelet matches `org/` only below `org`, but `org` also as `orgx`).
    pub canonical: String,
    /// The key with the host as written (scheme, API suffix and padding still dropped), when the
    /// kubelet matches images with it that it would not match with `canonical`: the host has upper
    /// case letters (the kubelet compares hosts case-sensitively), or it is a Docker Hub alias that
    /// images may name literally (`registry-1.docker.io/...`). Kept beside the canonical key so that
    /// no working pull is lost.
    pub kept: Option<String>,
    pub warnings: Vec<KeyWarning>,
}

/// Something legal but risky about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyWarning {
    /// The host contains a glob (`*.amazonaws.com`): it matches every registry of that shape.
    WildcardHost,
    /// The key said `http://`: the kubelet ignores the scheme, but the registry may not speak TLS.
    PlainHttp,
    /// A repository path without a trailing slash: the kubelet's match is a string prefix, so
    /// `quay.io/org` also matches `quay.io/organization/...`.
    PathPrefix,
}

impl fmt::Display for KeyWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyWarning::WildcardHost => "wildcard host: the credential is sent to every registry matching it",
            KeyWarning::PlainHttp => {
                "plain-http registry: the scheme is dropped, and the registry must be trusted as insecure by the node"
            }
            KeyWarning::PathPrefix => {
                "repository path without a trailing slash: the kubelet matches it as a string prefix (`org` also matches `orgx`); end it with `/` to match only below it"
            }
        })
    }
}

/// Why a key cannot be used. Messages describe the key's shape; the key itself is named by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyProblem {
    #[error("the registry key is empty")]
    Empty,
    #[error("unsupported scheme `{0}`: only https:// and http:// registries exist")]
    UnsupportedScheme(String),
    #[error("the key carries user information before `@`; credentials belong in the entry, not the key")]
    UserInfo,
    #[error("query strings and fragments have no meaning in a registry key")]
    QueryOrFragment,
    #[error("the host is empty")]
    EmptyHost,
    #[error("host label `{0}` is not a DNS label (letters, digits, `-`, and the globs `*` or `?`)")]
    InvalidHostLabel(String),
    #[error("glob character classes (`[...]`) in hosts are not supported")]
    CharacterClass,
    #[error(
        "a bracketed IPv6 host without a port never matches: the kubelet reads `[...]` as a glob character class; add the port"
    )]
    Ipv6WithoutPort,
    // The port is not echoed: what stands there may be a token written in the wrong place.
    #[error("the port is not a number from 1 to 65535")]
    InvalidPort,
    #[error(
        "repository path component `{0}` is not valid (lowercase letters and digits, separated by `.`, `_`, `__` or `-`)"
    )]
    InvalidPathComponent(String),
    #[error("the repository path has an empty component (`//`): the kubelet then matches no image with it")]
    EmptyPathComponent,
}

/// Turns a key as written by a person or a tool into its canonical form.
pub fn normalize_registry_key(raw: &str) -> Result<RegistryKey, KeyProblem> {
    let mut warnings = Vec::new();
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(KeyProblem::Empty);
    }
    let rest = match trimmed.split_once("://") {
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "https" => rest,
            "http" => {
                warnings.push(KeyWarning::PlainHttp);
                rest
            }
            _ => return Err(KeyProblem::UnsupportedScheme(scheme.to_owned())),
        },
        None => trimmed,
    };
    if rest.contains(['?', '#']) {
        return Err(KeyProblem::QueryOrFragment);
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains('@') {
        return Err(KeyProblem::UserInfo);
    }
    let (written_host, port) = split_port(authority)?;
    if written_host.starts_with('[') && port.is_none() {
        return Err(KeyProblem::Ipv6WithoutPort);
    }
    let host = normalize_host(written_host)?;
    if host.contains(['*', '?']) {
        warnings.push(KeyWarning::WildcardHost);
    }
    let (path, below) = repository_path(path)?;
    if !path.is_empty() && !below {
        warnings.push(KeyWarning::PathPrefix);
    }

    let host = if port.is_none() && DOCKER_HUB_ALIASES.contains(&host.as_str()) { DOCKER_HUB.to_owned() } else { host };
    let mut suffix = String::new();
    if let Some(port) = port {
        suffix.push(':');
        suffix.push_str(port);
    }
    // The kubelet strips a leading `v1/` or `v2/` from every key, the canonical one too: a path
    // that starts with one is written behind a `v2/` for the kubelet to strip.
    if path.first().is_some_and(|c| matches!(*c, "v1" | "v2")) {
        suffix.push_str("/v2");
    }
    for component in &path {
        suffix.push('/');
        suffix.push_str(component);
    }
    if below {
        suffix.push('/');
    }
    // `index.docker.io` as written never matches an image (image names say `docker.io`): the kubelet
    // serves Docker Hub with it only through a fallback, which `docker.io` replaces.
    let kept = (written_host != host && written_host != "index.docker.io").then(|| format!("{written_host}{suffix}"));
    Ok(RegistryKey { canonical: host + &suffix, kept, warnings })
}

/// Splits `host:port` (or `[v6]:port`), validating the port.
fn split_port(authority: &str) -> Result<(&str, Option<&str>), KeyProblem> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        match bracketed.split_once(']') {
            Some((_, after)) => {
                let host = &authority[..authority.len() - after.len()];
                match after {
                    "" => (host, None),
                    _ => match after.strip_prefix(':') {
                        Some(port) => (host, Some(port)),
                        None => return Err(KeyProblem::InvalidHostLabel(authority.to_owned())),
                    },
                }
            }
            None => return Err(KeyProblem::InvalidHostLabel(authority.to_owned())),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && matches!(port.parse::<u32>(), Ok(1..=65535));
        if !valid {
            return Err(KeyProblem::InvalidPort);
        }
    }
    Ok((host, port))
}

/// Lowercases and validates a host: DNS labels (globs allowed) or a bracketed IPv6 address.
fn normalize_host(host: &str) -> Result<String, KeyProblem> {
    if host.is_empty() {
        return Err(KeyProblem::EmptyHost);
    }
    let host = host.to_ascii_lowercase();
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let valid = !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        return if valid { Ok(host) } else { Err(KeyProblem::InvalidHostLabel(host)) };
    }
    if host.contains('[') {
        return Err(KeyProblem::CharacterClass);
    }
    for label in host.split('.') {
        let is_glob = label.contains(['*', '?']);
        let charset_ok = label.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'*' | b'?'));
        let edges_ok = is_glob || !(label.starts_with('-') || label.ends_with('-'));
        if label.is_empty() || label.len() > 63 || !charset_ok || !edges_ok {
            return Err(KeyProblem::InvalidHostLabel(label.to_owned()));
        }
    }
    Ok(host)
}

/// The repository scope of a key: path components after the kubelet's API-suffix stripping, and
/// whether a slash followed them (repositories below the path only).
fn repository_path(path: &str) -> Result<(Vec<&str>, bool), KeyProblem> {
    let (trimmed, slash) = match path.strip_suffix('/') {
        Some(trimmed) => (trimmed, true),
        None => (path, false),
    };
    let mut components: Vec<&str> = if path.is_empty() { Vec::new() } else { trimmed.split('/').collect() };
    // `/v1/` and `/v2/` name the registry API, not a repository. The kubelet strips one of them,
    // lowercase and followed by a slash; a bare trailing `/v2` means the same to the person who
    // wrote it. Nothing else is stripped: `V2` or a second `v2` stays a path, as the kubelet reads it.
    if components.first().is_some_and(|c| matches!(*c, "v1" | "v2")) {
        components.remove(0);
    }
    for component in &components {
        if component.is_empty() {
            return Err(KeyProblem::EmptyPathComponent);
        }
        if !is_repository_component(component) {
            return Err(KeyProblem::InvalidPathComponent((*component).to_owned()));
        }
    }
    let below = slash && !components.is_empty();
    Ok((components, below))
}

/// The distribution reference grammar's path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn is_repository_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let valid = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !valid {
            return false;
        }
    }
    true
}

/// A key as a message may show it: user information, a query or fragment, and a port that is not
/// a number are replaced by `***`. A token pasted into a key (`https://user:token@host/v2/`,
/// `host/?access_token=...`, `host:token`) never reaches a log, an Event, status or CLI output.
pub fn redact_key(key: &str) -> String {
    let (scheme, rest) = key.find("://").map_or(("", key), |i| key.split_at(i + 3));
    let (rest, hidden_tail) = match rest.find(['?', '#']) {
        Some(i) => (&rest[..i], "?***"),
        None => (rest, ""),
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let (userinfo, host_port) = match authority.rfind('@') {
        Some(i) => ("***@", &authority[i + 1..]),
        None => ("", authority),
    };
    let host_port = match host_port.rfind(':') {
        Some(i) if !host_port[i..].contains(']') && !host_port[i + 1..].chars().all(|c| c.is_ascii_digit()) => {
            format!("{}:***", &host_port[..i])
        }
        _ => host_port.to_owned(),
    };
    format!("{scheme}{userinfo}{host_port}{path}{hidden_tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_carrying_a_credential_is_redacted_before_it_is_shown() {
        for (key, shown) in [
            ("https://ci:t0ken@registry.corp/v2/", "https://***@registry.corp/v2/"),
            ("t0ken@registry.corp", "***@registry.corp"),
            ("registry.corp/?access_token=t0ken", "registry.corp/?***"),
            ("registry.corp/org#t0ken", "registry.corp/org?***"),
            ("registry.corp:t0ken", "registry.corp:***"),
            ("https://registry.corp:t0ken/v2/", "https://registry.corp:***/v2/"),
            ("registry.corp:5000/org/", "registry.corp:5000/org/"),
            ("[::1]:5000", "[::1]:5000"),
            ("[::1]", "[::1]"),
            ("Registry.Corp", "Registry.Corp"),
        ] {
            assert_eq!(redact_key(key), shown, "{key}");
            assert!(!redact_key(key).contains("t0ken"));
        }
    }

    fn canonical(raw: &str) -> String {
        normalize_registry_key(raw).expect(raw).canonical
    }

    #[test]
    fn scheme_and_api_suffix_are_stripped() {
        assert_eq!(canonical("https://registry.internal.corp/v2/"), "registry.internal.corp");
        assert_eq!(canonical("https://registry.internal.corp/v1/"), "registry.internal.corp");
        assert_eq!(canonical("registry.internal.corp/v2"), "registry.internal.corp");
        assert_eq!(canonical("https://registry.internal.corp/"), "registry.internal.corp");
        assert_eq!(canonical("  registry.internal.corp \n"), "registry.internal.corp");
    }

    #[test]
    fn api_suffix_before_a_path_is_dropped_like_the_kubelet_does() {
        assert_eq!(canonical("https://quay.io/v2/org/"), "quay.io/org/");
        assert_eq!(canonical("https://quay.io/v2/org"), "quay.io/org");
    }

    #[test]
    fn only_what_the_kubelet_strips_is_stripped() {
        // The kubelet strips one lowercase `/v1/` or `/v2/`: whatever else is a path to it, and
        // dropping it would widen the key to the whole registry.
        // A path that itself starts with `v2` keeps a `v2/` in front for the kubelet to strip.
        assert_eq!(canonical("https://registry.corp/v2/v2/"), "registry.corp/v2/v2/");
        assert_eq!(canonical("https://registry.corp/v1/v2/org"), "registry.corp/v2/v2/org");
        assert_eq!(canonical("registry.corp/v2/v1"), "registry.corp/v2/v1");
        assert_eq!(canonical("registry.corp/v2/v2/v2/"), "registry.corp/v2/v2/v2/");
        for raw in ["https://registry.corp/V2/", "registry.corp/V1", "registry.corp/v2/V2/", "registry.corp/V2/v2/"] {
            assert!(
                matches!(normalize_registry_key(raw), Err(KeyProblem::InvalidPathComponent(c)) if c.eq_ignore_ascii_case("v2") || c == "V1"),
                "{raw}"
            );
        }
        assert_eq!(normalize_registry_key("https://registry.corp/v2//"), Err(KeyProblem::EmptyPathComponent));
    }

    #[test]
    fn repository_scope_is_kept() {
        assert_eq!(canonical("quay.io/org"), "quay.io/org");
        assert_eq!(canonical("quay.io/org/team/"), "quay.io/org/team/");
        assert_eq!(canonical("ghcr.io/my-org/sub_team.x"), "ghcr.io/my-org/sub_team.x");
    }

    #[test]
    fn host_is_lowercased_and_port_kept() {
        assert_eq!(canonical("HTTPS://Registry.Corp:5000/v2/"), "registry.corp:5000");
        assert_eq!(canonical("localhost:5000"), "localhost:5000");
        assert_eq!(canonical("[::1]:5000"), "[::1]:5000");
    }

    #[test]
    fn docker_hub_aliases_become_docker_io() {
        for alias in [
            "https://index.docker.io/v1/",
            "index.docker.io",
            "registry-1.docker.io",
            "https://registry.hub.docker.com",
            "docker.io",
            "DOCKER.IO",
        ] {
            assert_eq!(canonical(alias), "docker.io", "{alias}");
        }
        assert_eq!(canonical("index.docker.io/myorg"), "docker.io/myorg");
    }

    #[test]
    fn a_trailing_slash_after_a_path_is_kept_and_its_absence_warned() {
        // The kubelet matches paths as string prefixes: `org/` matches below `org` only.
        let below = normalize_registry_key("quay.io/org/").unwrap();
        assert_eq!((below.canonical.as_str(), below.warnings.as_slice()), ("quay.io/org/", &[][..]));
        let prefix = normalize_registry_key("quay.io/org").unwrap();
        assert_eq!(prefix.warnings, vec![KeyWarning::PathPrefix]);
        // Without a path, a trailing slash means nothing.
        assert_eq!(canonical("quay.io/"), "quay.io");
        assert_eq!(canonical("quay.io/v2/"), "quay.io");
    }

    #[test]
    fn a_spelling_the_kubelet_matches_differently_is_kept_beside_the_canonical_key() {
        let kept = |raw: &str| normalize_registry_key(raw).unwrap().kept;
        assert_eq!(kept("https://Registry.Corp:5000/v2/org/"), Some("Registry.Corp:5000/org/".to_owned()));
        assert_eq!(kept("registry-1.docker.io"), Some("registry-1.docker.io".to_owned()));
        assert_eq!(kept("registry.hub.docker.com/org/"), Some("registry.hub.docker.com/org/".to_owned()));
        // Images never name `index.docker.io` (it becomes `docker.io`): nothing to keep.
        assert_eq!(kept("https://index.docker.io/v1/"), None);
        assert_eq!(kept("https://registry.corp/v2/"), None);
        // A kept key normalizes back to its canonical key.
        for raw in ["https://Registry.Corp:5000/v2/org/", "registry-1.docker.io", "*.CORP.IO"] {
            let key = normalize_registry_key(raw).unwrap();
            assert_eq!(normalize_registry_key(&key.kept.unwrap()).unwrap().canonical, key.canonical, "{raw}");
        }
    }

    #[test]
    fn docker_hub_alias_with_a_port_is_another_registry() {
        assert_eq!(canonical("index.docker.io:5000"), "index.docker.io:5000");
    }

    #[test]
    fn wildcard_and_plain_http_are_warnings() {
        let key = normalize_registry_key("*.dkr.ecr.us-east-1.amazonaws.com").unwrap();
        assert_eq!(key.warnings, vec![KeyWarning::WildcardHost]);
        let key = normalize_registry_key("http://registry.lan").unwrap();
        assert_eq!(key.canonical, "registry.lan");
        assert_eq!(key.warnings, vec![KeyWarning::PlainHttp]);
    }

    #[test]
    fn rejections_name_the_problem() {
        let cases = [
            ("", KeyProblem::Empty),
            ("   ", KeyProblem::Empty),
            ("ftp://registry.corp", KeyProblem::UnsupportedScheme("ftp".into())),
            ("https://user:pw@registry.corp", KeyProblem::UserInfo),
            ("registry.corp/?x=1", KeyProblem::QueryOrFragment),
            ("https:///v2/", KeyProblem::EmptyHost),
            ("registry..corp", KeyProblem::InvalidHostLabel(String::new())),
            ("-registry.corp", KeyProblem::InvalidHostLabel("-registry".into())),
            ("reg_istry.corp", KeyProblem::InvalidHostLabel("reg_istry".into())),
            ("registry.[ab].corp", KeyProblem::CharacterClass),
            ("[::1]", KeyProblem::Ipv6WithoutPort),
            ("https://[::1]/v2/", KeyProblem::Ipv6WithoutPort),
            ("registry.corp:", KeyProblem::InvalidPort),
            ("registry.corp:99999", KeyProblem::InvalidPort),
            ("registry.corp:0", KeyProblem::InvalidPort),
            ("registry.corp:http", KeyProblem::InvalidPort),
            ("quay.io/MyOrg", KeyProblem::InvalidPathComponent("MyOrg".into())),
            ("quay.io/org//team", KeyProblem::EmptyPathComponent),
            ("quay.io/org//", KeyProblem::EmptyPathComponent),
            ("registry.corp//", KeyProblem::EmptyPathComponent),
            ("quay.io/org..x", KeyProblem::InvalidPathComponent("org..x".into())),
        ];
        for (raw, expected) in cases {
            assert_eq!(normalize_registry_key(raw), Err(expected), "{raw:?}");
        }
    }

    #[test]
    fn repository_component_grammar() {
        for ok in ["a", "a.b", "a_b", "a__b", "a-b", "a---b", "0x"] {
            assert!(is_repository_component(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a___b", "a._b", "A", "a.", ".a"] {
            assert!(!is_repository_component(bad), "{bad}");
        }
    }
}
