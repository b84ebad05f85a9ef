//! Any text is either read by `lint` (checked, fixed, and the fixed manifests read again) or
//! refused with a reason; never a panic, a stack overflow, or memory beyond the reader's limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regcred_operator::cli::lint::lint_text;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    if let Ok((_, fixed)) = lint_text(text) {
        lint_text(&fixed).unwrap_or_else(|reason| panic!("--fix wrote manifests that lint refuses: {reason}"));
    }
});
