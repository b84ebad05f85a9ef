//! The subcommands of the `regcred-operator` binary.

pub mod crd;
pub mod doctor;
pub mod lint;
mod near_miss;
pub mod normalize;
pub mod run;

use clap::{Parser, Subcommand};

/// Keeps a normalized image pull secret in every selected namespace, and finds pull-secret mistakes.
#[derive(Debug, Parser)]
#[command(name = "regcred-operator", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Normalize docker config JSON (FILE, or stdin): canonical JSON on stdout, problems on stderr.
    Normalize(normalize::NormalizeArgs),
    /// Find pull-secret mistakes in manifest files (YAML or JSON); exit 0 clean, 1 findings, 2 unreadable.
    Lint(lint::LintArgs),
    /// Explain, from the cluster, why a Pod cannot pull its images, with the commands that fix it.
    Doctor(doctor::DoctorArgs),
    /// Run the controller against the cluster in KUBECONFIG (or in-cluster configuration).
    Run(run::RunArgs),
    /// Print the RegistryCredential CustomResourceDefinition as YAML.
    Crd,
}
