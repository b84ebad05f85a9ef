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
    let mut walk = Walk::default();
    for path in paths {
        walk.path(path);
    }
    for problem in &walk.problems {
        let _ = writeln!(stderr, "error: {problem}");
        unreadable = true;
    }
    for file in walk.files {
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

/// The manifest files under the paths given, found within bounds: symlinks are followed, but
/// never back into a directory on the way there (a loop), never deeper than [`MAX_WALK_DEPTH`],
/// and never to more than [`MAX_WALK_FILES`] files. What is not read is a problem, named.
#[derive(Default)]
struct Walk {
    files: Vec<PathBuf>,
    problems: Vec<String>,
    /// The directories being walked, resolved, outermost first.
    ancestors: Vec<PathBuf>,
    /// Every directory walked, resolved: one reached again through a symlink is not walked twice
    /// (symlinks fanning out level after level would otherwise walk exponentially many paths).
    walked: std::collections::HashSet<PathBuf>,
    /// The file limit was reached: nothing more is walked.
    full: bool,
}

/// Deeper than any repository lays out manifests.
const MAX_WALK_DEPTH: usize = 64;
const MAX_WALK_FILES: usize = 100_000;

impl Walk {
    fn path(&mut self, path: &Path) {
        let is_dir = match std::fs::metadata(path) {
            _ if path.as_os_str() == "-" => false,
            Ok(metadata) => metadata.is_dir(),
            Err(error) => return self.problems.push(format!("cannot read {}: {error}", path.display())),
        };
        if self.full {
            return;
        }
        if !is_dir {
            if self.files.len() == MAX_WALK_FILES {
                self.full = true;
                return self.problems.push(format!("{}: refused: more than {MAX_WALK_FILES} files", path.display()));
            }
            return self.files.push(path.to_owned());
        }
        if let Err(problem) = self.directory(path) {
            self.problems.push(problem);
        }
    }

    fn directory(&mut self, path: &Path) -> Result<(), String> {
        let unreadable = |error: std::io::Error| format!("cannot read {}: {error}", path.display());
        let resolved = std::fs::canonicalize(path).map_err(unreadable)?;
        if let Some(ancestor) = self.ancestors.iter().find(|a| **a == resolved) {
            return Err(format!("{}: refused: a symlink loop back to {}", path.display(), ancestor.display()));
        }
        if self.ancestors.len() == MAX_WALK_DEPTH {
            return Err(format!("{}: refused: directories nested deeper than {MAX_WALK_DEPTH}", path.display()));
        }
        if !self.walked.insert(resolved.clone()) {
            return Ok(());
        }
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(path).and_then(|dir| dir.map(|e| e.map(|e| e.path())).collect()).map_err(unreadable)?;
        entries.sort();
        self.ancestors.push(resolved);
        for entry in entries {
            let manifest = entry.extension().and_then(|e| e.to_str()).is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e));
            if entry.is_dir() || manifest {
                self.path(&entry);
            }
        }
        self.ancestors.pop();
        Ok(())
    }
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
