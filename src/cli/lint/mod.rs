//! `regcred-operator lint [--fix] [--format text|json] PATH...`: pull-secret mistakes in manifest
//! files, found before they reach a cluster.
//!
//! [`manifest`] turns files into documents with line numbers, [`check`] is the pure analysis
//! reporting in the terms of [`finding`], and this module does the reading and the printing.

mod check;
mod finding;
pub(crate) mod manifest;
mod set;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use check::check;
pub use finding::Code;
use finding::{Finding, Report, Severity};
use manifest::{Document, MAX_INPUT_BYTES, parse_documents};

/// Rounds of fixing: a rename can reveal a namespace move, which the next round makes.
const FIX_ROUNDS: usize = 5;
const MANIFEST_EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

#[derive(Debug, Args)]
pub struct LintArgs {
    /// Print the corrected manifests on stdout instead of the findings; what could not be fixed
    /// goes to stderr.
    #[arg(long)]
    pub(crate) fix: bool,

    /// How findings are printed.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: Format,

    /// Manifest files, directories (searched recursively for *.yaml, *.yml, *.json), or `-` for stdin.
    #[arg(required = true)]
    pub(crate) paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

/// Lints the paths as one set; returns the exit code: 0 clean, 1 findings, 2 unreadable input.
pub fn run(args: &LintArgs, stdin: &mut dyn Read, stdout: &mut dyn Write, stderr: &mut dyn Write) -> u8 {
    let (documents, unreadable) = load(&args.paths, stdin, stderr);
    let findings = if args.fix {
        let (fixed, remaining) = fix(documents);
        write_documents(&fixed, stdout);
        if !remaining.is_empty() {
            let _ = writeln!(stderr, "not fixed ({} left):", remaining.len());
            write_findings(&remaining, args.format, stderr);
        }
        remaining
    } else {
        let findings = check(&documents).findings;
        write_findings(&findings, args.format, stdout);
        findings
    };
    match (unreadable, findings.is_empty()) {
        (true, _) => 2,
        (false, true) => 0,
        (false, false) => 1,
    }
}

/// Lints `text` as one manifest file, without files or stdout: the number of findings and the
/// manifests `--fix` would write, or why the text was refused. The path `run` takes, for the
/// fuzz target.
pub fn lint_text(text: &str) -> Result<(usize, String), String> {
    let documents = parse_documents("<input>", text).map_err(|error| error.to_string())?;
    let findings = check(&documents).findings.len();
    let (fixed, _) = fix(documents);
    let mut written = Vec::new();
    write_documents(&fixed, &mut written);
    Ok((findings, String::from_utf8_lossy(&written).into_owned()))
}

/// Every document of every path, in the order given (directories sorted); unreadable inputs are
/// reported on `stderr` and flagged.
fn load(paths: &[PathBuf], stdin: &mut dyn Read, stderr: &mut dyn Write) -> (Vec<Document>, bool) {
    let mut documents = Vec::new();
    let mut unreadable = false;
    let mut files = Vec::new();
    for path in paths {
        if let Err(error) = collect_files(path, &mut files) {
            let _ = writeln!(stderr, "error: cannot read {}: {error}", path.display());
            unreadable = true;
        }
    }
    for file in files {
        let (name, text) = if file.as_os_str() == "-" {
            ("<stdin>".to_owned(), read_bounded(stdin))
        } else {
            (file.display().to_string(), std::fs::File::open(&file).and_then(|mut f| read_bounded(&mut f)))
        };
        let parsed = match text {
            Ok(Some(text)) => parse_documents(&name, &text).map_err(|error| error.to_string()),
            Ok(None) => Err(format!("{name}: refused: larger than {} MiB", MAX_INPUT_BYTES / (1024 * 1024))),
            Err(error) => Err(format!("cannot read {name}: {error}")),
        };
        match parsed {
            Ok(parsed) => documents.extend(parsed),
            Err(message) => {
                let _ = writeln!(stderr, "error: {message}");
                unreadable = true;
            }
        }
    }
    (documents, unreadable)
}

/// The whole input as text, or `None` when it is larger than [`MAX_INPUT_BYTES`]; never reads
/// more than one byte past the limit.
fn read_bounded(input: &mut dyn Read) -> std::io::Result<Option<String>> {
    let mut bytes = Vec::new();
    input.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Ok(None);
    }
    String::from_utf8(bytes).map(Some).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn collect_files(path: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.as_os_str() == "-" || !std::fs::metadata(path)?.is_dir() {
        files.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(path)?.map(|entry| entry.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect_files(&entry, files)?;
        } else if entry.extension().and_then(|e| e.to_str()).is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e)) {
            files.push(entry);
        }
    }
    Ok(())
}

/// Applies the unambiguous edits round after round; returns the documents and what is left.
fn fix(mut documents: Vec<Document>) -> (Vec<Document>, Vec<Finding>) {
    for _ in 0..FIX_ROUNDS {
        let Report { edits, .. } = check(&documents);
        if edits.is_empty() {
            break;
        }
        for edit in edits {
            documents[edit.document].set(&edit.path, edit.value);
        }
    }
    let remaining = check(&documents).findings;
    (documents, remaining)
}

fn write_documents(documents: &[Document], out: &mut dyn Write) {
    let several_files = documents.windows(2).any(|pair| pair[0].source != pair[1].source);
    let mut previous: Option<&str> = None;
    for document in documents {
        let _ = writeln!(out, "---");
        if several_files && previous != Some(document.source.as_str()) {
            let _ = writeln!(out, "# Source: {}", document.source);
        }
        previous = Some(&document.source);
        match serde_norway::to_string(&document.value) {
            Ok(yaml) => {
                let _ = write!(out, "{yaml}");
            }
            // A value built from YAML always serializes; say so rather than drop a document.
            Err(error) => {
                let _ = writeln!(out, "# {} document {}: not written: {error}", document.source, document.number);
            }
        }
    }
}

fn write_findings(findings: &[Finding], format: Format, out: &mut dyn Write) {
    let errors = findings.iter().filter(|f| f.severity == Severity::Error).count();
    let warnings = findings.len() - errors;
    match format {
        Format::Text => {
            for f in findings {
                let _ = writeln!(
                    out,
                    "{}:{}: {} {}: {}: {}: {}\n    fix: {}",
                    f.file, f.line, f.severity, f.code, f.object, f.path, f.message, f.fix
                );
            }
            let _ = writeln!(out, "{errors} error(s), {warnings} warning(s)");
        }
        Format::Json => {
            let report = serde_json::json!({ "findings": findings, "errors": errors, "warnings": warnings });
            let _ = writeln!(out, "{report:#}");
        }
    }
}
