//! Running the `regcred-operator` binary as scripts and CI pipelines do.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `regcred-operator SUBCOMMAND ARGS...` with `stdin` as its standard input.
pub fn run_cli(subcommand: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(crate::operator_binary())
        .arg(subcommand)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}
