//! `regcred-operator normalize [FILE]`.

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::Args;

use crate::credential::normalize_docker_config;

#[derive(Debug, Args)]
pub struct NormalizeArgs {
    /// Docker config JSON (`.dockerconfigjson` or legacy `.dockercfg`); stdin when absent or `-`.
    pub(crate) file: Option<PathBuf>,
}

/// Writes canonical JSON to `stdout`, or every problem to `stderr`; returns the exit code.
pub fn run(args: &NormalizeArgs, stdin: &mut dyn Read, stdout: &mut dyn Write, stderr: &mut dyn Write) -> u8 {
    let (name, input) = match read_input(args.file.as_ref(), stdin) {
        Ok(read) => read,
        Err(message) => {
            let _ = writeln!(stderr, "error: {message}");
            return 2;
        }
    };
    match normalize_docker_config(&input) {
        Ok(normalized) => {
            for rewrite in &normalized.rewrites {
                let _ = writeln!(stderr, "normalized: {:?} -> {:?}", rewrite.from, rewrite.to);
            }
            for warning in &normalized.warnings {
                let _ = writeln!(stderr, "warning: {name}: {warning}");
            }
            let _ = writeln!(stdout, "{}", normalized.config.to_canonical_json());
            0
        }
        Err(invalid) => {
            for problem in &invalid.problems {
                let _ = writeln!(stderr, "error: {name}: {problem}");
            }
            1
        }
    }
}

fn read_input(file: Option<&PathBuf>, stdin: &mut dyn Read) -> Result<(String, Vec<u8>), String> {
    let mut input = Vec::new();
    match file {
        Some(path) if path.as_os_str() != "-" => {
            input = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Ok((path.display().to_string(), input))
        }
        _ => {
            stdin.read_to_end(&mut input).map_err(|e| format!("cannot read stdin: {e}"))?;
            Ok(("<stdin>".to_owned(), input))
        }
    }
}
