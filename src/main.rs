use std::process::ExitCode;

use clap::Parser;
use regcred_operator::cli::{Cli, Command, crd, doctor, lint, normalize, run};

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
