//! Any image reference and any registry key: parsing and matching never panic, and matching stays
//! fast however many wildcards a key holds (a slow input shows as a fuzzer timeout).
#![no_main]

use libfuzzer_sys::fuzz_target;
use regcred_operator::credential::{ImageReference, key_matches_image, kubelet_key, normalize_registry_key, redact_key};

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    let (key, image) = text.split_once('\n').unwrap_or((text, "registry.example/app"));
    let _ = redact_key(key);
    let _ = normalize_registry_key(key);
    if let Ok(image) = ImageReference::parse(image) {
        // As written, and as the kubelet files it (scheme and API prefix dropped).
        let _ = key_matches_image(key, &image);
        let _ = key_matches_image(&kubelet_key(key), &image);
    }
});
