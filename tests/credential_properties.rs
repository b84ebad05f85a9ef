//! Properties of docker config normalization over generated configs.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use proptest::prelude::*;
use regcred_operator::credential::{normalize_docker_config, normalize_registry_key};
use serde_json::{Value, json};

/// A registry as meant by its author: canonical host, optional port and repository path.
fn registry() -> impl Strategy<Value = String> {
    let host = prop_oneof![
        Just("docker.io".to_owned()),
        Just("quay.io".to_owned()),
        Just("localhost".to_owned()),
        "[a-z][a-z0-9]{0,6}(\\.[a-z][a-z0-9]{0,4}){1,2}",
    ];
    let port = prop::option::of(1u16..=65535);
    let path = prop::collection::vec("[a-z0-9]{1,5}([._-][a-z0-9]{1,3})?", 0..3);
    (host, port, path).prop_map(|(host, port, path)| {
        let mut key = host;
        if let Some(port) = port {
            key = format!("{key}:{port}");
        }
        for component in path {
            if component != "v1" && component != "v2" {
                key = format!("{key}/{component}");
            }
        }
        key
    })
}

/// The same registry written another way: scheme, case, API suffix, slashes, Docker Hub aliases.
fn spelled(canonical: &str, variant: u8) -> String {
    let (host, rest) = canonical.split_once(['/', ':']).map_or((canonical, ""), |(h, _)| (h, &canonical[h.len()..]));
    let hub_alias = ["index.docker.io", "registry-1.docker.io", "registry.hub.docker.com", "docker.io"];
    let host = if host == "docker.io" && !rest.starts_with(':') {
        hub_alias[usize::from(variant) % hub_alias.len()].to_owned()
    } else {
        host.to_owned()
    };
    let host = if variant & 1 == 1 { host.to_ascii_uppercase() } else { host };
    let scheme = ["", "https://", "HTTPS://"][usize::from(variant / 2) % 3];
    // After a repository path a trailing slash changes the meaning (below the path only): none here.
    let suffix = if rest.contains('/') { "" } else { ["", "/", "/v2/", "/v1/", "/v2"][usize::from(variant) % 5] };
    format!("  {scheme}{host}{rest}{suffix} ")
}

#[derive(Debug, Clone)]
struct Credentials {
    username: String,
    password: String,
}

fn credentials() -> impl Strategy<Value = Credentials> {
    ("[a-zA-Z0-9_.@-]{1,12}", "[ -~]{1,16}").prop_map(|(username, password)| Credentials { username, password })
}

/// One entry in one of the shapes the kubelet accepts.
fn entry(creds: &Credentials, shape: u8) -> Value {
    let user_pass = format!("{}:{}", creds.username, creds.password);
    match shape % 4 {
        0 => json!({"username": creds.username, "password": creds.password}),
        1 => json!({"auth": STANDARD.encode(&user_pass)}),
        2 => json!({"auth": STANDARD_NO_PAD.encode(&user_pass), "email": "x@example.com"}),
        _ => json!({"username": creds.username, "password": creds.password, "auth": STANDARD.encode(&user_pass)}),
    }
}

fn config(entries: &[(String, Value)], legacy: bool) -> Vec<u8> {
    let map: serde_json::Map<String, Value> = entries.iter().cloned().collect();
    let value = if legacy { Value::Object(map) } else { json!({ "auths": map }) };
    serde_json::to_vec(&value).unwrap()
}

/// Distinct registries, each with its credentials.
fn meanings() -> impl Strategy<Value = BTreeMap<String, Credentials>> {
    prop::collection::btree_map(registry(), credentials(), 1..5)
}

proptest! {
    #[test]
    fn normalization_is_idempotent(meaning in meanings(), variant in any::<u8>(), shape in any::<u8>(), legacy in any::<bool>()) {
        let entries: Vec<_> = meaning.iter().map(|(k, c)| (spelled(k, variant), entry(c, shape))).collect();
        let once = normalize_docker_config(&config(&entries, legacy)).unwrap().config.to_canonical_json();
        let again = normalize_docker_config(once.as_bytes()).unwrap();
        prop_assert!(again.rewrites.is_empty());
        prop_assert_eq!(again.config.to_canonical_json(), once);
    }

    #[test]
    fn every_output_key_is_canonical(meaning in meanings(), variant in any::<u8>(), shape in any::<u8>()) {
        let entries: Vec<_> = meaning.iter().map(|(k, c)| (spelled(k, variant), entry(c, shape))).collect();
        let normalized = normalize_docker_config(&config(&entries, false)).unwrap();
        // Every output key is canonical, or a spelling the kubelet matches differently (host case,
        // a Docker Hub alias), kept beside its canonical key; together they are the meaning.
        let mut canonical = std::collections::BTreeSet::new();
        for key in normalized.config.registries() {
            let again = normalize_registry_key(key).unwrap();
            prop_assert!(again.canonical == key || again.kept.as_deref() == Some(key), "{}", key);
            prop_assert!(normalized.config.registries().any(|k| k == again.canonical));
            prop_assert!(key == key.trim() && !key.contains("://") && !key.ends_with('/'));
            canonical.insert(again.canonical);
        }
        let expected: std::collections::BTreeSet<String> = meaning.keys().cloned().collect();
        prop_assert_eq!(canonical, expected);
    }

    #[test]
    fn equal_meaning_gives_byte_equal_output(
        meaning in meanings(),
        (variant_a, variant_b) in (any::<u8>(), any::<u8>()),
        (shape_a, shape_b) in (any::<u8>(), any::<u8>()),
        (legacy_a, legacy_b) in (any::<bool>(), any::<bool>()),
        reverse in any::<bool>(),
    ) {
        let a: Vec<_> = meaning.iter().map(|(k, c)| (spelled(k, variant_a), entry(c, shape_a))).collect();
        let mut b: Vec<_> = meaning.iter().map(|(k, c)| (spelled(k, variant_b), entry(c, shape_b))).collect();
        if reverse {
            b.reverse();
        }
        // Byte-equal once the spellings kept for the kubelet's sake (host case, Docker Hub aliases)
        // are set aside: those follow how each was written.
        let canonical_part = |entries: &[(String, Value)], legacy: bool| {
            let out = normalize_docker_config(&config(entries, legacy)).unwrap().config.to_canonical_json();
            let mut out: Value = serde_json::from_str(&out).unwrap();
            out["auths"].as_object_mut().unwrap().retain(|k, _| normalize_registry_key(k).unwrap().canonical == *k);
            out.to_string()
        };
        prop_assert_eq!(canonical_part(&a, legacy_a), canonical_part(&b, legacy_b));
    }

    #[test]
    fn arbitrary_input_never_panics(input in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = normalize_docker_config(&input);
    }

    #[test]
    fn arbitrary_keys_never_panic(key in "\\PC{0,40}") {
        if let Ok(key) = normalize_registry_key(&key) {
            prop_assert_eq!(normalize_registry_key(&key.canonical).unwrap().canonical, key.canonical);
        }
    }
}
