//! Any input either normalizes to a config that normalizes to itself, or is refused; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regcred_operator::credential::normalize_docker_config;

fuzz_target!(|input: &[u8]| {
    if let Ok(normalized) = normalize_docker_config(input) {
        let canonical = normalized.config.to_canonical_json();
        let again = normalize_docker_config(canonical.as_bytes()).expect("canonical output must be valid input");
        assert_eq!(again.config.to_canonical_json(), canonical, "normalization must be idempotent");
    }
});
