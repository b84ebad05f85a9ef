use std::process::ExitCode;

use clap::Parser;
use regcred_operator::cli::{Cli, Command, crd, doctor, lint, normalize, run};

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at its start (`_RJEM_MALLOC_CONF` in the environment adds to
/// them): two arenas rather than four per CPU, and freed pages returned to the kernel after a
/// second rather than ten. At 10,000 namespaces that took the peak RSS from 47.9 to 44.6 MiB
/// (docs/benchmark.md); the operator spends about 2% of its CPU in the allocator.
#[cfg(feature = "jemalloc")]
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_OPTIONS: JemallocOptions = JemallocOptions(c"narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr());

/// A C string jemalloc reads as its `const char *malloc_conf`.
#[cfg(feature = "jemalloc")]
#[repr(transparent)]
struct JemallocOptions(*const std::ffi::c_char);

// The pointer is to a string literal, never written.
#[cfg(feature = "jemalloc")]
unsafe impl Sync for JemallocOptions {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Normalize(args) => {
            normalize::run(&args, &mut std::io::stdin().lock(), &mut std::io::stdout().lock(), &mut std::io::stderr())
        }
        Command::Lint(args) => {
            lint::run(&args, &mut std::io::stdin().lock(), &mut std::io::stdout().lock(), &mut std::io::stderr())
        }
        Command::Doctor(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            runtime.block_on(doctor::run(&args, &mut std::io::stdout().lock(), &mut std::io::stderr()))
        }
        Command::Run(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
            runtime.block_on(run::run(args))
        }
        Command::Crd => {
            print!("{}", crd::crd_yaml());
            0
        }
    };
    ExitCode::from(code)
}
