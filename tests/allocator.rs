//! The binary carries its jemalloc options (src/main.rs): jemalloc states the options it runs
//! with when asked to print its statistics at exit.

use std::process::Command;

#[test]
#[cfg_attr(not(feature = "jemalloc"), ignore = "built on the system allocator")]
fn jemalloc_runs_with_two_arenas_and_returns_freed_pages_after_a_second() {
    let output = Command::new(env!("CARGO_BIN_EXE_regcred-operator"))
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "{output:?}");
    let stats = String::from_utf8_lossy(&output.stderr);
    // Whole values: jemalloc's defaults are four arenas per CPU and 10000 ms.
    for option in ["opt.narenas: 2\n", "opt.dirty_decay_ms: 1000 ("] {
        assert!(stats.contains(option), "jemalloc does not say {option:?}; it said:\n{stats}");
    }
}
