//! What the checks report: findings with their stable codes, and the edits that fix them.

use std::fmt;

use serde::{Serialize, Serializer};
use serde_norway::Value;

use super::manifest::FieldPath;

/// A stable finding code. Scripts match on these, so a code never changes meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    MalformedConfig,
    EmptyCredentials,
    NonCanonicalKey,
    WrongSecretType,
    RiskyConfig,
    PullSecretNotFound,
    PullSecretInOtherNamespace,
    RegistryNotCovered,
    NoPullSecrets,
    InvalidImage,
    InvalidRegistryCredential,
}

impl Code {
    pub const ALL: [Code; 11] = [
        Code::MalformedConfig,
        Code::EmptyCredentials,
        Code::NonCanonicalKey,
        Code::WrongSecretType,
        Code::RiskyConfig,
        Code::PullSecretNotFound,
        Code::PullSecretInOtherNamespace,
        Code::RegistryNotCovered,
        Code::NoPullSecrets,
        Code::InvalidImage,
        Code::InvalidRegistryCredential,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Code::MalformedConfig => "RC001",
            Code::EmptyCredentials => "RC002",
            Code::NonCanonicalKey => "RC003",
            Code::WrongSecretType => "RC004",
            Code::RiskyConfig => "RC005",
            Code::PullSecretNotFound => "RC010",
            Code::PullSecretInOtherNamespace => "RC011",
            Code::RegistryNotCovered => "RC012",
            Code::NoPullSecrets => "RC013",
            Code::InvalidImage => "RC014",
            Code::InvalidRegistryCredential => "RC020",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.id())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The pull fails, or pulls anonymously.
    Error,
    /// Works, but is fragile, risky, or cannot be verified from the set.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem, where it is, and what to do. Never holds a credential value.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub code: Code,
    pub severity: Severity,
    pub file: String,
    /// The document's position in its file, from 1.
    pub document: usize,
    pub line: usize,
    /// `Kind namespace/name`.
    pub object: String,
    pub path: String,
    pub message: String,
    pub fix: String,
}

/// A change `--fix` makes: the value at `path` of document `document` (an index into the
/// documents checked) becomes `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    pub document: usize,
    pub path: FieldPath,
    pub value: Value,
}

#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// Edits that do not contradict each other.
    pub edits: Vec<Edit>,
}
