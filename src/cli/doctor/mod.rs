//! `regcred-operator doctor pod NAME -n NS`: why a Pod cannot pull its images, and the commands
//! that fix it.
//!
//! This module reads the cluster and prints; [`diagnosis`] decides, without I/O. Only names, types
//! and registry hosts are printed: Secret data is parsed in memory and never shown.

pub(crate) mod diagnosis;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use clap::{Args, Subcommand};
use k8s_openapi::api::core::v1::{Event as CoreEvent, Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use thiserror::Error;

use diagnosis::{Diagnosis, Evidence, PodEvent, SecretLookup, diagnose};

use crate::crd::RegistryCredential;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(subcommand)]
    pub(crate) target: DoctorTarget,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DoctorTarget {
    /// Diagnose a Pod stuck pulling its images (ContainerCreating, ErrImagePull, ImagePullBackOff).
    Pod(PodArgs),
}

#[derive(Debug, Args)]
pub struct PodArgs {
    /// The Pod's name.
    pub(crate) name: String,
    /// The Pod's namespace; default: the kubeconfig context's namespace.
    #[arg(short = 'n', long)]
    pub(crate) namespace: Option<String>,
}

#[derive(Debug, Error)]
pub(crate) enum DoctorError {
    #[error("no Kubernetes client (set KUBECONFIG or run in a cluster): {0}")]
    NoClient(#[source] kube::Error),
    #[error("Pod {namespace}/{name} not found")]
    PodNotFound { namespace: String, name: String },
    #[error("reading Pod {namespace}/{name}: {source}")]
    PodUnreadable {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Diagnoses the Pod; returns the exit code: 0 nothing found, 1 causes found, 2 the Pod could not
/// be read.
pub async fn run(args: &DoctorArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> u8 {
    let DoctorTarget::Pod(pod) = &args.target;
    let result = async {
        let client = Client::try_default().await.map_err(DoctorError::NoClient)?;
        let namespace = pod.namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
        gather(&client, &namespace, &pod.name).await
    }
    .await;
    match result {
        Ok((evidence, unchecked)) => {
            let diagnosis = diagnose(&evidence);
            print_report(&evidence, &diagnosis, &unchecked, stdout);
            if diagnosis.causes.is_empty() { 0 } else { 1 }
        }
        Err(error) => {
            let _ = writeln!(stderr, "error: {error}");
            2
        }
    }
}

/// Reads everything the diagnosis needs. Only the Pod is required; what else cannot be read is
/// returned as a note, and the diagnosis goes on without it.
async fn gather(client: &Client, namespace: &str, name: &str) -> Result<(Evidence, Vec<String>), DoctorError> {
    let mut unchecked = Vec::new();
    let mut note = |what: &str, error: kube::Error| unchecked.push(format!("{what}: {error}"));

    let pod = match Api::<Pod>::namespaced(client.clone(), namespace).get_opt(name).await {
        Ok(Some(pod)) => pod,
        Ok(None) => return Err(DoctorError::PodNotFound { namespace: namespace.to_owned(), name: name.to_owned() }),
        Err(source) => {
            return Err(DoctorError::PodUnreadable { namespace: namespace.to_owned(), name: name.to_owned(), source });
        }
    };
    let spec = pod.spec.clone().unwrap_or_default();
    let account_name = spec.service_account_name.clone().unwrap_or_else(|| "default".to_owned());

    let namespace_labels = match Api::<Namespace>::all(client.clone()).get_opt(namespace).await {
        Ok(found) => found.map(|ns| ns.labels().clone()),
        Err(error) => {
            note("Namespace labels", error);
            None
        }
    };
    let service_account =
        match Api::<ServiceAccount>::namespaced(client.clone(), namespace).get_opt(&account_name).await {
            Ok(found) => found,
            Err(error) => {
                note("ServiceAccount", error);
                None
            }
        };

    let names: BTreeSet<String> = spec
        .image_pull_secrets
        .iter()
        .flatten()
        .chain(service_account.iter().flat_map(|sa| sa.image_pull_secrets.iter().flatten()))
        .map(|reference| reference.name.clone())
        .collect();
    let secrets_api = Api::<Secret>::namespaced(client.clone(), namespace);
    let mut secrets = BTreeMap::new();
    for secret_name in &names {
        let lookup = match secrets_api.get_opt(secret_name).await {
            Ok(Some(secret)) => SecretLookup::Found {
                secret_type: secret.type_.clone(),
                data: secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect(),
            },
            Ok(None) => SecretLookup::Missing,
            Err(error) => SecretLookup::Unreadable(error.to_string()),
        };
        secrets.insert(secret_name.clone(), lookup);
    }

    let mut secret_names = Vec::new();
    if secrets.values().any(|lookup| matches!(lookup, SecretLookup::Missing)) {
        // Metadata only: the search for near misses never reads another Secret's data.
        let all = Api::<Secret>::all(client.clone()).list_metadata(&ListParams::default()).await;
        let listed = match all {
            Ok(list) => Ok(list),
            Err(error) => {
                note("Secret names in other namespaces", error);
                secrets_api.list_metadata(&ListParams::default()).await
            }
        };
        match listed {
            Ok(list) => {
                secret_names = list.items.iter().map(|s| (s.namespace().unwrap_or_default(), s.name_any())).collect()
            }
            Err(error) => note("Secret names in the namespace", error),
        }
    }

    let credentials = match Api::<RegistryCredential>::all(client.clone()).list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(error) => {
            note("RegistryCredentials", error);
            Vec::new()
        }
    };

    let events = pod_events(client, &pod, &mut note).await;
    let evidence = Evidence { pod, namespace_labels, service_account, secrets, secret_names, credentials, events };
    Ok((evidence, unchecked))
}

/// The Pod's Events from both Event APIs, each once (they share storage, so the same Event can
/// come back from both), oldest first.
async fn pod_events(client: &Client, pod: &Pod, note: &mut impl FnMut(&str, kube::Error)) -> Vec<PodEvent> {
    let namespace = pod.namespace().unwrap_or_default();
    let (name, uid) = (pod.name_any(), pod.uid().unwrap_or_default());
    // An Event of an earlier Pod with the same name carries that Pod's uid.
    let about_this_pod = |kind: Option<&str>, event_name: Option<&str>, event_uid: Option<&str>| {
        kind == Some("Pod") && event_name == Some(name.as_str()) && event_uid.is_none_or(|u| u.is_empty() || u == uid)
    };
    let mut seen = BTreeSet::new();
    let mut events: Vec<(String, PodEvent)> = Vec::new();

    let core = Api::<CoreEvent>::namespaced(client.clone(), &namespace);
    let selector = format!("involvedObject.kind=Pod,involvedObject.name={name}");
    match core.list(&ListParams::default().fields(&selector)).await {
        Ok(list) => {
            for event in list.items {
                let o = &event.involved_object;
                if !about_this_pod(o.kind.as_deref(), o.name.as_deref(), o.uid.as_deref()) || !seen.insert(event.uid())
                {
                    continue;
                }
                let time = event.last_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
                events.push((
                    time,
                    PodEvent {
                        reason: event.reason.unwrap_or_default(),
                        message: event.message.unwrap_or_default(),
                        warning: event.type_.as_deref() == Some("Warning"),
                        count: event.count.unwrap_or(1),
                    },
                ));
            }
        }
        Err(error) => note("core/v1 Events", error),
    }

    // events.k8s.io has no field selector on `regarding`: filter here.
    match Api::<Event>::namespaced(client.clone(), &namespace).list(&ListParams::default()).await {
        Ok(list) => {
            for event in list.items {
                let Some(o) = &event.regarding else { continue };
                if !about_this_pod(o.kind.as_deref(), o.name.as_deref(), o.uid.as_deref()) || !seen.insert(event.uid())
                {
                    continue;
                }
                let time = event.event_time.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
                events.push((
                    time,
                    PodEvent {
                        reason: event.reason.unwrap_or_default(),
                        message: event.note.unwrap_or_default(),
                        warning: event.type_.as_deref() == Some("Warning"),
                        count: event.series.map_or(1, |s| s.count),
                    },
                ));
            }
        }
        Err(error) => note("events.k8s.io Events", error),
    }
    events.sort_by(|a, b| a.0.cmp(&b.0));
    events.into_iter().map(|(_, event)| event).collect()
}

fn print_report(evidence: &Evidence, diagnosis: &Diagnosis, unchecked: &[String], out: &mut dyn Write) {
    let pod = &evidence.pod;
    let spec = pod.spec.clone().unwrap_or_default();
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Unknown".to_owned());
    let account = spec.service_account_name.clone().unwrap_or_else(|| "default".to_owned());
    let _ = writeln!(
        out,
        "Pod {}/{}: {phase}, ServiceAccount {account}",
        pod.namespace().unwrap_or_default(),
        pod.name_any()
    );

    let _ = writeln!(out, "\nImages:");
    for check in &diagnosis.images {
        let verdict = match (&check.registry, &check.covered_by) {
            (Err(error), _) => format!("invalid reference: {error}"),
            (Ok(registry), Some((secret, key))) => format!("registry {registry}, covered by {secret:?} (key {key:?})"),
            (Ok(registry), None) => format!("registry {registry}, no pull secret of the Pod covers it"),
        };
        let _ = writeln!(out, "  {}: {} ({verdict})", check.container, check.image);
    }

    let _ = writeln!(out, "\nPull secrets:");
    let pod_secrets: Vec<String> = spec.image_pull_secrets.iter().flatten().map(|r| r.name.clone()).collect();
    let sa_secrets = evidence.service_account_pull_secrets();
    for (owner, names) in [("Pod spec", &pod_secrets), (&*format!("ServiceAccount {account}"), &sa_secrets)] {
        let shown: Vec<String> =
            names.iter().map(|name| format!("{name} ({})", describe(evidence.secrets.get(name)))).collect();
        let listed = if shown.is_empty() { "none".to_owned() } else { shown.join(", ") };
        let _ = writeln!(out, "  {owner}: {listed}");
    }
    if evidence.service_account.is_none() {
        let _ = writeln!(out, "  (ServiceAccount {account} not found)");
    }

    let _ = writeln!(out, "\nEvents:");
    if evidence.events.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for event in &evidence.events {
        let kind = if event.warning { "Warning" } else { "Normal" };
        let message = event.message.split_whitespace().collect::<Vec<_>>().join(" ");
        let _ = writeln!(out, "  {kind} {} (x{}): {message}", event.reason, event.count);
    }

    if !unchecked.is_empty() {
        let _ = writeln!(out, "\nNot checked (could not read):");
        for what in unchecked {
            let _ = writeln!(out, "  {what}");
        }
    }

    let _ = writeln!(out);
    if diagnosis.causes.is_empty() {
        let _ = writeln!(out, "Diagnosis: no pull-secret problem found.");
        return;
    }
    let _ = writeln!(out, "Diagnosis, most likely first:");
    for (i, cause) in diagnosis.causes.iter().enumerate() {
        let _ = writeln!(out, "{}. {}", i + 1, cause.summary);
        for detail in &cause.details {
            let _ = writeln!(out, "   - {detail}");
        }
        for command in &cause.commands {
            let _ = writeln!(out, "   $ {command}");
        }
    }
}

/// A Secret by type and state; never its data.
fn describe(lookup: Option<&SecretLookup>) -> String {
    match lookup {
        Some(SecretLookup::Found { secret_type, data }) => {
            let keys: Vec<&str> = data.keys().map(String::as_str).collect();
            format!("type {}, keys {keys:?}", secret_type.as_deref().unwrap_or("Opaque"))
        }
        Some(SecretLookup::Missing) => "missing".to_owned(),
        Some(SecretLookup::Unreadable(reason)) => format!("unreadable: {reason}"),
        None => "not read".to_owned(),
    }
}
