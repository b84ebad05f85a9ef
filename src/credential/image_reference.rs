//! Image references (`registry.corp:5000/team/app:v1@sha256:...`) and the kubelet's matching of
//! an image against the keys of a pull secret.
//!
//! Parsing follows the distribution reference grammar as `ParseNormalizedNamed` applies it: the
//! first path component is a registry only when it contains `.` or `:`, is `localhost`, or has an
//! uppercase letter; otherwise the image is on Docker Hub (`docker.io`, with `library/` for
//! single-component names). The kubelet looks credentials up by the resulting name
//! (`docker.io/library/nginx`), so matching here works on that name too.
//!
//! Matching follows `pkg/credentialprovider` (keyring.go): [`kubelet_key`] is how `Add` files a
//! docker config key, [`key_matches_image`] is `URLsMatch`, and [`covering_key`] adds `Lookup`'s
//! fallback that lets an `index.docker.io` key serve Docker Hub images.

use std::fmt;

use thiserror::Error;

use super::registry_key::DOCKER_HUB;

/// The kubelet's name for Docker Hub in its keyring fallback (`defaultRegistryHost`).
const KUBELET_DEFAULT_REGISTRY: &str = "index.docker.io";
/// The distribution grammar's limit on the length of a name (registry and repository).
const NAME_MAX_LEN: usize = 255;

/// A parsed image reference, normalized as the container runtime and the kubelet see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// `host[:port]`: `docker.io` for Docker Hub images.
    pub registry: String,
    /// The repository path: `library/nginx`, `team/app`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// Why an image reference cannot be parsed. Image names are not secret, so they are quoted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ImageReferenceError {
    #[error("the image reference is empty")]
    Empty,
    #[error("image {0:?}: the name is longer than 255 characters")]
    NameTooLong(String),
    #[error("image {0:?}: registry host {1:?} is not a valid host name or address")]
    InvalidRegistry(String, String),
    #[error(
        "image {0:?}: repository path component {1:?} is not valid (lowercase letters and digits, separated by `.`, `_`, `__` or `-`)"
    )]
    InvalidRepository(String, String),
    #[error(
        "image {0:?}: tag {1:?} is not valid (letters, digits, `_`, `.`, `-`, at most 128, not starting with `.` or `-`)"
    )]
    InvalidTag(String, String),
    #[error("image {0:?}: digest {1:?} is not `algorithm:hex`")]
    InvalidDigest(String, String),
    #[error("image {0:?}: a repository cannot be a 64-character hexadecimal string (it reads as an image ID)")]
    HexRepository(String),
}

impl ImageReference {
    /// Parses an image as written in a Pod spec.
    pub fn parse(image: &str) -> Result<ImageReference, ImageReferenceError> {
        if image.is_empty() {
            return Err(ImageReferenceError::Empty);
        }
        if image.len() == 64 && image.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ImageReferenceError::HexRepository(image.to_owned()));
        }
        let (rest, digest) = match image.split_once('@') {
            Some((rest, digest)) => {
                if !is_digest(digest) {
                    return Err(ImageReferenceError::InvalidDigest(image.to_owned(), digest.to_owned()));
                }
                (rest, Some(digest.to_owned()))
            }
            None => (image, None),
        };
        // A `:` after the last `/` starts a tag; one before it belongs to a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(colon) => {
                let (name, tag) = rest.split_at(last_slash + colon);
                let tag = &tag[1..];
                if !is_tag(tag) {
                    return Err(ImageReferenceError::InvalidTag(image.to_owned(), tag.to_owned()));
                }
                (name, Some(tag.to_owned()))
            }
            None => (rest, None),
        };
        if name.len() > NAME_MAX_LEN {
            return Err(ImageReferenceError::NameTooLong(image.to_owned()));
        }
        let (registry, repository) = split_registry(name);
        if registry != DOCKER_HUB && !is_registry(registry) {
            return Err(ImageReferenceError::InvalidRegistry(image.to_owned(), registry.to_owned()));
        }
        if let Some(bad) = repository.split('/').find(|c| !is_path_component(c)) {
            return Err(ImageReferenceError::InvalidRepository(image.to_owned(), bad.to_owned()));
        }
        let (registry, repository) = match registry {
            "index.docker.io" | DOCKER_HUB if !repository.contains('/') => {
                (DOCKER_HUB, format!("library/{repository}"))
            }
            "index.docker.io" => (DOCKER_HUB, repository.to_owned()),
            _ => (registry, repository.to_owned()),
        };
        Ok(ImageReference { registry: registry.to_owned(), repository, tag, digest })
    }

    /// `registry/repository`: the name the kubelet looks credentials up by.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    pub fn is_docker_hub(&self) -> bool {
        self.registry == DOCKER_HUB
    }

    /// The registry host without the port.
    pub fn host(&self) -> &str {
        split_host_port(&self.registry).0
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// `splitDockerDomain`: the first component is a registry only if it looks like a host.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first == "localhost" || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    }
}

/// `host[:port]` where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
fn is_registry(registry: &str) -> bool {
    let (host, port) = if let Some(bracketed) = registry.strip_prefix('[') {
        let Some((v6, after)) = bracketed.split_once(']') else { return false };
        if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = registry.starts_with('[')
        || host.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-'
        });
    port_ok && host_ok
}

/// The grammar's path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn is_path_component(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    component
        .split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        .filter(|separator| !separator.is_empty())
        .all(|separator| matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-'))
}

/// `[\w][\w.-]{0,127}`.
fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `algorithm:hex` with an algorithm of `[A-Za-z][A-Za-z0-9]*` components joined by `+._-`, and
/// at least 32 hex digits.
fn is_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else { return false };
    let algorithm_ok = algorithm.split(['+', '.', '_', '-']).all(|component| {
        component.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
            && component.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    algorithm_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The key under which the kubelet files a docker config entry (keyring.go `Add`): the scheme
/// and a leading `/v1/` or `/v2/` are dropped, nothing else is changed, not even the case.
pub fn kubelet_key(raw: &str) -> String {
    let url = raw.strip_prefix("https://").or_else(|| raw.strip_prefix("http://")).unwrap_or(raw);
    let (authority, path) = split_authority(url);
    // url.Parse keeps user information out of the host.
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let path = match path.get(..4) {
        Some("/v1/" | "/v2/") => &path[3..],
        _ => path,
    };
    if path.is_empty() || path == "/" { host.to_owned() } else { format!("{host}{path}") }
}

/// Whether a keyring key matches the image (keyring.go `URLsMatch`): equal ports, as many
/// dot-separated host parts each glob-matching its counterpart, and the key's path a string prefix
/// of the image's path (so `quay.io/org` also matches `quay.io/organization/app`, as in the kubelet).
pub fn key_matches_image(key: &str, image: &ImageReference) -> bool {
    let name = image.name();
    let (key_authority, key_path) = split_authority(key);
    let (image_authority, image_path) = split_authority(&name);
    let (key_host, key_port) = split_host_port(key_authority);
    let (image_host, image_port) = split_host_port(image_authority);
    let key_parts: Vec<&str> = key_host.split('.').collect();
    let image_parts: Vec<&str> = image_host.split('.').collect();
    key_port == image_port
        && key_parts.len() == image_parts.len()
        && image_path.starts_with(key_path)
        && key_parts.iter().zip(&image_parts).all(|(pattern, part)| path_match(pattern, part) == Some(true))
}

/// The first of `keys` (keyring keys, in order) that the kubelet would use for `image`, including
/// its fallback: an `index.docker.io` key serves Docker Hub images that no other key matched.
pub fn covering_key<'k>(keys: impl IntoIterator<Item = &'k str> + Clone, image: &ImageReference) -> Option<&'k str> {
    keys.clone()
        .into_iter()
        .find(|key| key_matches_image(key, image))
        .or_else(|| keys.into_iter().find(|key| image.is_docker_hub() && *key == KUBELET_DEFAULT_REGISTRY))
}

/// Splits a schemeless URL into its authority and its path (from the first `/`, without any
/// query or fragment), as url.Parse would.
fn split_authority(url: &str) -> (&str, &str) {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    match url.find('/') {
        Some(slash) => url.split_at(slash),
        None => (url, ""),
    }
}

/// `net.SplitHostPort`, falling back to the whole authority and no port when it fails, as
/// keyring.go's `SplitURL` does.
fn split_host_port(authority: &str) -> (&str, &str) {
    if let Some(bracketed) = authority.strip_prefix('[') {
        return match bracketed.split_once("]:") {
            Some((host, port)) if !host.contains(']') => (host, port),
            _ => (authority, ""),
        };
    }
    match authority.split_once(':') {
        Some((host, port)) if !port.contains(':') => (host, port),
        _ => (authority, ""),
    }
}

/// Go's `path.Match` on a name without `/`; a malformed pattern matches nothing.
pub fn wildcard_matches(pattern: &str, name: &str) -> bool {
    path_match(pattern, name) == Some(true)
}

/// Go's `path.Match` for one host part (which holds no `/`): `*`, `?`, `[...]` classes with
/// ranges and `^` negation, and `\` escapes. `None` for a malformed pattern, which the kubelet
/// treats as no match. Linear in the pattern times the name, whatever the stars: a key such as
/// `**********b.corp` must not make matching exponential.
fn path_match(pattern: &str, name: &str) -> Option<bool> {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let tokens = tokenize(&pattern)?;
    Some(match_tokens(&pattern, &tokens, &name))
}

/// One element of a host-part pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// `*`: any run of characters.
    Star,
    /// `?`: any one character.
    One,
    Literal(char),
    /// `[...]`: the class body starts at this index of the pattern (after `[`).
    Class(usize),
}

/// The pattern's tokens; `None` when it is malformed anywhere (Go reports that whether or not an
/// earlier part already decided the match).
fn tokenize(pattern: &[char]) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = pattern.get(i) {
        let (token, width) = match c {
            '*' => (Token::Star, 1),
            '?' => (Token::One, 1),
            '[' => (Token::Class(i + 1), 1 + match_class(&pattern[i + 1..], None)?.1),
            '\\' => (Token::Literal(*pattern.get(i + 1)?), 2),
            literal => (Token::Literal(literal), 1),
        };
        // Consecutive stars match what one does.
        if !(token == Token::Star && tokens.last() == Some(&Token::Star)) {
            tokens.push(token);
        }
        i += width;
    }
    Some(tokens)
}

/// Wildcard matching that remembers only the last star: on a mismatch it retries from there with
/// one more character swallowed, so each (token, character) pair is visited a bounded number of times.
fn match_tokens(pattern: &[char], tokens: &[Token], name: &[char]) -> bool {
    let matches_one = |token: Token, c: char| match token {
        Token::One => true,
        Token::Literal(literal) => literal == c,
        Token::Class(start) => match_class(&pattern[start..], Some(c)).is_some_and(|(matched, _)| matched),
        Token::Star => false,
    };
    let (mut t, mut n) = (0, 0);
    let mut last_star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::Star) => {
                last_star = Some((t + 1, n));
                t += 1;
            }
            Some(&token) if matches_one(token, name[n]) => {
                t += 1;
                n += 1;
            }
            _ => match last_star {
                Some((after, swallowed)) => {
                    t = after;
                    n = swallowed + 1;
                    last_star = Some((after, swallowed + 1));
                }
                None => return false,
            },
        }
    }
    tokens[t..].iter().all(|token| *token == Token::Star)
}

/// Matches `c` against the class body after `[`; returns the result and the body's length up to
/// and including `]`.
fn match_class(body: &[char], c: Option<char>) -> Option<(bool, usize)> {
    let mut i = 0;
    let negated = body.first() == Some(&'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *body.get(i)?;
        if lo == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let (lo, width) = class_char(&body[i..])?;
        i += width;
        let mut hi = lo;
        if body.get(i) == Some(&'-') && body.get(i + 1) != Some(&']') {
            let (end, width) = class_char(&body[i + 1..])?;
            hi = end;
            i += 1 + width;
        }
        if c.is_some_and(|c| lo <= c && c <= hi) {
            matched = true;
        }
    }
    Some((c.is_some() && matched != negated, i))
}

fn class_char(chars: &[char]) -> Option<(char, usize)> {
    match chars.first()? {
        '\\' => Some((*chars.get(1)?, 2)),
        '-' | ']' => None,
        &c => Some((c, 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(s: &str) -> ImageReference {
        ImageReference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn many_stars_match_in_linear_time() {
        let host = format!("{}.corp", "a".repeat(40));
        assert!(!path_match("**********b", &host.replace(".corp", "")).unwrap());
        assert!(path_match("**********a", &"a".repeat(40)).unwrap());
        assert!(path_match("*a*b*c*", "xxaxxbxxcxx").unwrap());
        assert!(!path_match("*a*b*c*", "xxaxxcxxbxx").unwrap());
        assert_eq!(path_match("*[", "x"), None, "malformed anywhere is no match");
    }

    #[test]
    fn docker_hub_is_the_default_registry() {
        let nginx = image("nginx");
        assert_eq!((nginx.registry.as_str(), nginx.repository.as_str()), ("docker.io", "library/nginx"));
        assert_eq!(nginx.tag, None);
        assert_eq!(image("bitnami/redis:7").name(), "docker.io/bitnami/redis");
        assert_eq!(image("docker.io/nginx").name(), "docker.io/library/nginx");
        assert_eq!(image("index.docker.io/library/nginx").name(), "docker.io/library/nginx");
        assert!(image("nginx:1.27").is_docker_hub());
    }

    #[test]
    fn a_registry_needs_a_dot_a_colon_or_localhost() {
        assert_eq!(image("registry.internal.corp/app:v2.1.0").registry, "registry.internal.corp");
        assert_eq!(image("localhost/app").registry, "localhost");
        assert_eq!(image("registry:5000/app").registry, "registry:5000");
        assert_eq!(image("internal/app").registry, "docker.io");
        assert_eq!(image("internal/app").repository, "internal/app");
        assert_eq!(image("Registry/app").registry, "Registry", "uppercase marks a host");
    }

    #[test]
    fn ports_are_not_tags() {
        let with_port = image("registry.corp:5000/team/app:1.0");
        assert_eq!(with_port.registry, "registry.corp:5000");
        assert_eq!(with_port.host(), "registry.corp");
        assert_eq!(with_port.repository, "team/app");
        assert_eq!(with_port.tag.as_deref(), Some("1.0"));
        let bare = image("localhost:5000");
        assert_eq!((bare.name().as_str(), bare.tag.as_deref()), ("docker.io/library/localhost", Some("5000")));
    }

    #[test]
    fn digests_with_and_without_tags() {
        let hex = "a".repeat(64);
        let pinned = image(&format!("quay.io/org/app:1.2@sha256:{hex}"));
        assert_eq!(pinned.tag.as_deref(), Some("1.2"));
        assert_eq!(pinned.digest, Some(format!("sha256:{hex}")));
        assert_eq!(pinned.to_string(), format!("quay.io/org/app:1.2@sha256:{hex}"));
        assert_eq!(image(&format!("registry:5000/app@sha256:{hex}")).registry, "registry:5000");
    }

    #[test]
    fn invalid_references_say_why() {
        let hex = "a".repeat(64);
        let cases = [
            ("", ImageReferenceError::Empty),
            ("Registry/App", ImageReferenceError::InvalidRepository("Registry/App".into(), "App".into())),
            ("UPPER", ImageReferenceError::InvalidRepository("UPPER".into(), "UPPER".into())),
            ("quay.io//app", ImageReferenceError::InvalidRepository("quay.io//app".into(), String::new())),
            ("app:-x", ImageReferenceError::InvalidTag("app:-x".into(), "-x".into())),
            ("app@sha256:abc", ImageReferenceError::InvalidDigest("app@sha256:abc".into(), "sha256:abc".into())),
            ("-bad.io/app", ImageReferenceError::InvalidRegistry("-bad.io/app".into(), "-bad.io".into())),
            ("bad.io:x/app", ImageReferenceError::InvalidRegistry("bad.io:x/app".into(), "bad.io:x".into())),
            (hex.as_str(), ImageReferenceError::HexRepository(hex.clone())),
        ];
        for (raw, expected) in cases {
            assert_eq!(ImageReference::parse(raw), Err(expected), "{raw:?}");
        }
        let long = format!("quay.io/{}", "a".repeat(250));
        assert_eq!(ImageReference::parse(&long), Err(ImageReferenceError::NameTooLong(long.clone())));
    }

    #[test]
    fn kubelet_keys_drop_only_the_scheme_and_the_api_prefix() {
        assert_eq!(kubelet_key("https://registry.internal.corp/v2/"), "registry.internal.corp");
        assert_eq!(kubelet_key("https://index.docker.io/v1/"), "index.docker.io");
        assert_eq!(kubelet_key("http://registry.lan"), "registry.lan");
        assert_eq!(kubelet_key("registry.corp/v2"), "registry.corp/v2", "without the slash it is a path");
        assert_eq!(kubelet_key("Registry.Corp"), "Registry.Corp");
        assert_eq!(kubelet_key("quay.io/v2/org/"), "quay.io/org/");
        assert_eq!(kubelet_key("registry.corp:5000"), "registry.corp:5000");
    }

    #[test]
    fn matching_follows_urls_match() {
        let app = image("registry.internal.corp/app:v2.1.0");
        assert!(key_matches_image("registry.internal.corp", &app));
        assert!(key_matches_image("*.internal.corp", &app));
        assert!(key_matches_image("registry.internal.*", &app));
        assert!(key_matches_image("registry.internal.corp/app", &app));
        assert!(!key_matches_image("*.corp", &app), "one glob part is one host part");
        assert!(!key_matches_image("Registry.Internal.Corp", &app), "case-sensitive");
        assert!(!key_matches_image("registry.internal.corp:443", &app), "ports must be equal");
        assert!(!key_matches_image("registry.internal.corp/v2", &app));
        assert!(!key_matches_image("registry.internal.corp/other", &app));

        let ported = image("registry.corp:5000/team/app");
        assert!(key_matches_image("registry.corp:5000", &ported));
        assert!(key_matches_image("registry.corp:5000/team", &ported));
        assert!(!key_matches_image("registry.corp", &ported));

        assert!(key_matches_image("quay.io/org", &image("quay.io/organization/app")), "a string prefix, as in Go");
        assert!(!key_matches_image("r?g.corp", &image("reg.corp/app")), "url.Parse reads `?` as a query");
        assert!(key_matches_image("reg[a-f].corp", &image("regc.corp/app")));
        assert!(!key_matches_image("reg[^a-f].corp", &image("regc.corp/app")));
        assert!(!key_matches_image("reg[a-.corp", &image("rega.corp/app")), "a malformed glob never matches");
    }

    #[test]
    fn docker_hub_keys() {
        let nginx = image("nginx");
        assert_eq!(covering_key(["docker.io"], &nginx), Some("docker.io"));
        assert_eq!(covering_key(["docker.io/library"], &nginx), Some("docker.io/library"));
        assert_eq!(covering_key(["index.docker.io"], &nginx), Some("index.docker.io"), "the kubelet's fallback");
        assert_eq!(covering_key(["index.docker.io/library"], &nginx), None);
        assert_eq!(covering_key(["registry-1.docker.io"], &nginx), None);
        assert_eq!(covering_key(["index.docker.io"], &image("quay.io/app")), None);
        assert_eq!(covering_key(["quay.io", "index.docker.io", "docker.io"], &nginx), Some("docker.io"));
    }
}
