//! `regcred-operator doctor pod NAME -n NS`: why a Pod cannot pull its images, and the commands
//! that fix it.
//!
//! This module reads the cluster into [`evidence`]; [`diagnosis`] runs the detectors over it,
//! one module per family of causes, without I/O; [`report`] prints. Only names, types and
//! registry hosts are printed: Secret data is parsed in memory and never shown.

mod cached_image;
mod created_before_the_secret;
mod credential_expired;
mod credentials;
mod credentials_refused;
mod diagnosis;
mod evidence;
mod mountable_secrets;
mod no_pull_secret;
mod own_pull_secrets;
mod registry_not_covered;
mod report;
mod sandbox_image;
mod secret_missing;
mod secret_unusable;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use clap::{Args, Subcommand};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Namespace, Node, ObjectReference, Pod, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, ObjectList, PartialObjectMeta};
use kube::{Api, Client, ResourceExt};
use thiserror::Error;

use diagnosis::diagnose;
use evidence::{Admission, Evidence, PodEvent, SecretLookup, reserved_namespaces};
use report::print_report;

use crate::cli::near_miss::near_misses;
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
            let mut report = Vec::new();
            print_report(&evidence, &diagnosis, &unchecked, &mut report);
            let _ = stdout.write_all(terminal_safe(&String::from_utf8_lossy(&report)).as_bytes());
            if diagnosis.causes.is_empty() { 0 } else { 1 }
        }
        Err(error) => {
            let _ = writeln!(stderr, "error: {}", terminal_safe(&error.to_string()));
            2
        }
    }
}

/// Reads everything the diagnosis needs. Only the Pod is required; what else cannot be read is
/// returned as a note, and the diagnosis goes on without it.
async fn gather(client: &Client, namespace: &str, name: &str) -> Result<(Evidence, Vec<String>), DoctorError> {
    let mut unchecked = Vec::new();
    let mut note = |what: &str, error: kube::Error| unchecked.push(format!("{what}: {error}"));

    let pod = read_pod(client, namespace, name).await?;
    let spec = pod.spec.clone().unwrap_or_default();
    let account_name = spec.service_account_name.clone().unwrap_or_else(|| "default".to_owned());
    let namespace_labels =
        noted(Api::<Namespace>::all(client.clone()).get_opt(namespace).await, "Namespace labels", &mut note)
            .map(|ns| ns.labels().clone());
    let service_account = noted(
        Api::<ServiceAccount>::namespaced(client.clone(), namespace).get_opt(&account_name).await,
        "ServiceAccount",
        &mut note,
    );
    let credentials = noted(
        Api::<RegistryCredential>::all(client.clone()).list(&ListParams::default()).await.map(|l| Some(l.items)),
        "RegistryCredentials",
        &mut note,
    )
    .unwrap_or_default();

    let named = named_pull_secrets(&pod, service_account.as_ref());
    let labels = namespace_labels.clone().unwrap_or_default();
    let names = with_copies_selecting(&named, &credentials, namespace, &labels, &account_name);
    let secrets = read_secrets(client, namespace, &names).await;
    let missing: Vec<&str> = named
        .iter()
        .filter(|name| matches!(secrets.get(*name), Some(SecretLookup::Missing)))
        .map(String::as_str)
        .collect();
    let secret_names = near_miss_candidates(client, namespace, &missing, &mut note).await;
    let events = pod_events(client, &pod, &mut note).await;
    let admission = admission(client).await;
    let kubelet_version = kubelet_version(client, spec.node_name.as_deref(), &mut note).await;
    let workload = workload(client, namespace, &pod, &mut note).await;
    let evidence = Evidence {
        pod,
        namespace_labels,
        service_account,
        secrets,
        secret_names,
        credentials,
        events,
        admission,
        kubelet_version,
        workload,
        read_at: k8s_openapi::jiff::Timestamp::now(),
    };
    Ok((evidence, unchecked))
}

async fn read_pod(client: &Client, namespace: &str, name: &str) -> Result<Pod, DoctorError> {
    match Api::<Pod>::namespaced(client.clone(), namespace).get_opt(name).await {
        Ok(Some(pod)) => Ok(pod),
        Ok(None) => Err(DoctorError::PodNotFound { namespace: namespace.to_owned(), name: name.to_owned() }),
        Err(source) => {
            Err(DoctorError::PodUnreadable { namespace: namespace.to_owned(), name: name.to_owned(), source })
        }
    }
}

/// The pull secrets the Pod spec or its ServiceAccount name.
fn named_pull_secrets(pod: &Pod, service_account: Option<&ServiceAccount>) -> BTreeSet<String> {
    pod.spec
        .iter()
        .flat_map(|spec| spec.image_pull_secrets.iter().flatten())
        .chain(service_account.iter().flat_map(|sa| sa.image_pull_secrets.iter().flatten()))
        .map(|reference| reference.name.clone())
        .collect()
}

/// The named Secrets, and the copies of the credentials that select the Pod, to tell when they
/// appeared.
fn with_copies_selecting(
    named: &BTreeSet<String>,
    credentials: &[RegistryCredential],
    namespace: &str,
    labels: &BTreeMap<String, String>,
    account: &str,
) -> BTreeSet<String> {
    let reserved = reserved_namespaces(credentials);
    let copies = credentials
        .iter()
        .filter(|c| c.spec.selects_pods_of(namespace, labels, account, &reserved))
        .map(|c| c.spec.secret_name.clone());
    named.iter().cloned().chain(copies).collect()
}

/// The version of the kubelet on the Pod's node, when it is scheduled.
async fn kubelet_version(
    client: &Client,
    node: Option<&str>,
    note: &mut impl FnMut(&str, kube::Error),
) -> Option<String> {
    let node = noted(Api::<Node>::all(client.clone()).get_opt(node?).await, "the Node's kubelet version", note)?;
    node.status?.node_info.map(|info| info.kubelet_version)
}

/// What a read found; a read that failed is noted as not checked, and counts as found nothing.
fn noted<T>(result: kube::Result<Option<T>>, what: &str, note: &mut impl FnMut(&str, kube::Error)) -> Option<T> {
    result.unwrap_or_else(|error| {
        note(what, error);
        None
    })
}

/// The Secrets the diagnosis reads in the Pod's namespace, by name.
async fn read_secrets(client: &Client, namespace: &str, names: &BTreeSet<String>) -> BTreeMap<String, SecretLookup> {
    let secrets_api = Api::<Secret>::namespaced(client.clone(), namespace);
    let mut secrets = BTreeMap::new();
    for secret_name in names {
        let lookup = match secrets_api.get_opt(secret_name).await {
            Ok(Some(secret)) => SecretLookup::Found {
                secret_type: secret.type_.clone(),
                created: secret.metadata.creation_timestamp.as_ref().map(|t| t.0),
                copy_of: secret.metadata.owner_references.iter().flatten().find_map(|owner| {
                    let credential = owner.controller == Some(true)
                        && owner.kind == "RegistryCredential"
                        && owner.api_version.starts_with("regcred.dev/");
                    credential.then(|| owner.uid.clone())
                }),
                data: secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect(),
            },
            Ok(None) => SecretLookup::Missing,
            Err(error) => SecretLookup::Unreadable(error.to_string()),
        };
        secrets.insert(secret_name.clone(), lookup);
    }
    secrets
}

/// Names of Secrets that may be meant by a missing pull secret: metadata only, page by page,
/// keeping only names that can matter, so the search never reads another Secret's data and its
/// memory does not grow with the cluster. Cluster-wide where allowed, else the namespace.
async fn near_miss_candidates(
    client: &Client,
    namespace: &str,
    missing: &[&str],
    note: &mut impl FnMut(&str, kube::Error),
) -> Vec<(String, String)> {
    if missing.is_empty() {
        return Vec::new();
    }
    let relevant = RelevantSecretNames { namespace, missing };
    let listed = match secret_names_paged(&Api::<Secret>::all(client.clone()), &relevant).await {
        Ok(names) => Ok(names),
        Err(error) => {
            note("Secret names in other namespaces", error);
            secret_names_paged(&Api::<Secret>::namespaced(client.clone(), namespace), &relevant).await
        }
    };
    listed.unwrap_or_else(|error| {
        note("Secret names in the namespace", error);
        Vec::new()
    })
}

/// The workload (kind, name) behind a Pod's ReplicaSet, for the command that recreates it.
async fn workload(
    client: &Client,
    namespace: &str,
    pod: &Pod,
    note: &mut impl FnMut(&str, kube::Error),
) -> Option<(String, String)> {
    let owner = pod.owner_references().iter().find(|o| o.controller == Some(true))?;
    if owner.kind != "ReplicaSet" {
        return None;
    }
    let set = Api::<ReplicaSet>::namespaced(client.clone(), namespace).get_opt(&owner.name).await;
    let set = noted(set, "the Pod's ReplicaSet", note)?;
    let owner = set.owner_references().iter().find(|o| o.controller == Some(true))?.clone();
    Some((owner.kind, owner.name))
}

/// The versions of the MutatingAdmissionPolicy API, newest first: v1 (Kubernetes 1.36+), v1beta1
/// (1.34 / 1.35 where enabled). The objects are the same in both; read as JSON, one code reads either.
const ADMISSION_API_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// Whether a MutatingAdmissionPolicy that takes RegistryCredentials as parameters is installed,
/// and bound, in the newest version of the API the cluster serves.
async fn admission(client: &Client) -> Admission {
    for version in ADMISSION_API_VERSIONS {
        let policies = admission_api(client, version, "MutatingAdmissionPolicy");
        let policy = match policies.list(&ListParams::default()).await {
            Ok(list) => list.items.into_iter().find(takes_registry_credentials),
            // 404: this version is not served; try the next.
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(error) => return Admission::Unknown(error.to_string()),
        };
        let Some(policy) = policy.map(|p| p.name_any()) else { return Admission::NotInstalled };
        let bindings = admission_api(client, version, "MutatingAdmissionPolicyBinding");
        return match bindings.list(&ListParams::default()).await {
            Ok(list) => {
                let bound = list.items.iter().any(|b| b.data["spec"]["policyName"].as_str() == Some(policy.as_str()));
                if bound { Admission::Active { policy } } else { Admission::Unbound { policy } }
            }
            Err(error) => {
                Admission::Unknown(format!("MutatingAdmissionPolicy {policy} is installed; its bindings: {error}"))
            }
        };
    }
    Admission::NotServed
}

fn admission_api(client: &Client, version: &str, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", version, kind);
    Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk))
}

/// A policy whose parameters are RegistryCredentials (`spec.paramKind`).
fn takes_registry_credentials(policy: &DynamicObject) -> bool {
    let param_kind = &policy.data["spec"]["paramKind"];
    param_kind["kind"].as_str() == Some("RegistryCredential")
        && param_kind["apiVersion"].as_str().is_some_and(|v| v.starts_with("regcred.dev/"))
}

/// Secrets listed per request, so that no response holds every Secret of a large cluster.
const PAGE_SIZE: u32 = 500;

/// Which Secret names the diagnosis of missing pull secrets reads: every name in the Pod's
/// namespace (near misses there), and elsewhere those equal or close to a missing one.
struct RelevantSecretNames<'a> {
    namespace: &'a str,
    missing: &'a [&'a str],
}

impl RelevantSecretNames<'_> {
    fn keeps(&self, namespace: &str, name: &str) -> bool {
        namespace == self.namespace
            || self.missing.iter().any(|wanted| *wanted == name || !near_misses(wanted, [name]).is_empty())
    }
}

async fn secret_names_paged(
    api: &Api<Secret>,
    relevant: &RelevantSecretNames<'_>,
) -> Result<Vec<(String, String)>, kube::Error> {
    paged(
        PAGE_SIZE,
        |params| async move { api.list_metadata(&params).await },
        |secret: PartialObjectMeta<Secret>| {
            let (namespace, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
            relevant.keeps(&namespace, &name).then_some((namespace, name))
        },
    )
    .await
}

/// Every item of a list, read `page_size` at a time and following the continue token; `keep`
/// decides what of each item stays in memory.
async fn paged<T, K, Fut>(
    page_size: u32,
    list: impl Fn(ListParams) -> Fut,
    mut keep: impl FnMut(T) -> Option<K>,
) -> Result<Vec<K>, kube::Error>
where
    T: Clone,
    Fut: Future<Output = Result<ObjectList<T>, kube::Error>>,
{
    let mut kept = Vec::new();
    let mut params = ListParams::default().limit(page_size);
    loop {
        let page = list(params.clone()).await?;
        kept.extend(page.items.into_iter().filter_map(&mut keep));
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(kept),
        }
    }
}

/// Text from the cluster made safe for a terminal: control characters (escape sequences,
/// carriage returns) and bidirectional overrides are shown escaped, so an Event or a status
/// message can neither drive the terminal nor disguise a line. Line breaks stay.
fn terminal_safe(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.contains(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut safe = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            safe.extend(c.escape_unicode());
        } else {
            safe.push(c);
        }
    }
    Cow::Owned(safe)
}

/// The Pod's Events from both Event APIs, each once, oldest first.
async fn pod_events(client: &Client, pod: &Pod, note: &mut impl FnMut(&str, kube::Error)) -> Vec<PodEvent> {
    let namespace = pod.namespace().unwrap_or_default();
    let mut filter = EventsOfPod { name: pod.name_any(), uid: pod.uid().unwrap_or_default(), seen: BTreeSet::new() };
    let mut events = core_events(client, &namespace, &mut filter).await.unwrap_or_else(|error| {
        note("core/v1 Events", error);
        Vec::new()
    });
    match events_k8s_io(client, &namespace, &mut filter).await {
        Ok(listed) => events.extend(listed),
        Err(error) => note("events.k8s.io Events", error),
    }
    events.sort_by(|a, b| a.0.cmp(&b.0));
    events.into_iter().map(|(_, event)| event).collect()
}

/// Which listed Events to keep: the kubelet's about this very Pod (its uid, not an earlier Pod's
/// of the same name), each once: the two Event APIs share storage, so the same Event can come
/// back from both. Anyone who may write Events in the namespace could otherwise put words in
/// the report.
struct EventsOfPod {
    name: String,
    uid: String,
    seen: BTreeSet<Option<String>>,
}

impl EventsOfPod {
    fn keeps(&mut self, regarding: &ObjectReference, reporter: Option<&str>, event_uid: Option<String>) -> bool {
        let about_this_pod = regarding.kind.as_deref() == Some("Pod")
            && regarding.name.as_deref() == Some(self.name.as_str())
            && !self.uid.is_empty()
            && regarding.uid.as_deref() == Some(self.uid.as_str());
        about_this_pod && reporter == Some("kubelet") && self.seen.insert(event_uid)
    }
}

/// An Event with the time it is sorted by.
type TimedEvent = (String, PodEvent);

/// The Pod's core/v1 Events that `filter` keeps, with their time.
async fn core_events(
    client: &Client,
    namespace: &str,
    filter: &mut EventsOfPod,
) -> Result<Vec<TimedEvent>, kube::Error> {
    let core = Api::<CoreEvent>::namespaced(client.clone(), namespace);
    let selector = format!("involvedObject.kind=Pod,involvedObject.name={}", filter.name);
    paged(
        PAGE_SIZE,
        |params| {
            let core = &core;
            let params = params.fields(&selector);
            async move { core.list(&params).await }
        },
        |event: CoreEvent| {
            let reporter = event.source.as_ref().and_then(|s| s.component.as_deref());
            if !filter.keeps(&event.involved_object, reporter.or(event.reporting_component.as_deref()), event.uid()) {
                return None;
            }
            let time = event.last_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
            Some((
                time,
                PodEvent {
                    reason: event.reason.unwrap_or_default(),
                    message: event.message.unwrap_or_default(),
                    warning: event.type_.as_deref() == Some("Warning"),
                    count: event.count.unwrap_or(1),
                },
            ))
        },
    )
    .await
}

/// The Pod's events.k8s.io Events that `filter` keeps, with their time. That API has no field
/// selector on `regarding`: they are filtered here, page by page.
async fn events_k8s_io(
    client: &Client,
    namespace: &str,
    filter: &mut EventsOfPod,
) -> Result<Vec<TimedEvent>, kube::Error> {
    let api = Api::<Event>::namespaced(client.clone(), namespace);
    paged(
        PAGE_SIZE,
        |params| {
            let api = &api;
            async move { api.list(&params).await }
        },
        |event: Event| {
            if !filter.keeps(event.regarding.as_ref()?, event.reporting_controller.as_deref(), event.uid()) {
                return None;
            }
            let time = event.event_time.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
            Some((
                time,
                PodEvent {
                    reason: event.reason.unwrap_or_default(),
                    message: event.note.unwrap_or_default(),
                    warning: event.type_.as_deref() == Some("Warning"),
                    count: event.series.map_or(1, |s| s.count),
                },
            ))
        },
    )
    .await
}

#[cfg(test)]
mod fixture;

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;

    #[test]
    fn only_the_kubelets_events_about_this_very_pod_are_read() {
        let mut filter = EventsOfPod { name: "web-1".into(), uid: "u-1".into(), seen: BTreeSet::new() };
        let about = |name: &str, uid: Option<&str>| ObjectReference {
            kind: Some("Pod".into()),
            name: Some(name.into()),
            uid: uid.map(Into::into),
            ..Default::default()
        };
        assert!(filter.keeps(&about("web-1", Some("u-1")), Some("kubelet"), Some("e1".into())));
        assert!(!filter.keeps(&about("web-1", Some("u-1")), Some("kubelet"), Some("e1".into())), "seen");
        assert!(!filter.keeps(&about("web-1", None), Some("kubelet"), Some("e2".into())), "no uid");
        assert!(!filter.keeps(&about("web-1", Some("")), Some("kubelet"), Some("e3".into())), "empty uid");
        assert!(!filter.keeps(&about("web-1", Some("u-0")), Some("kubelet"), Some("e4".into())), "an earlier Pod");
        assert!(!filter.keeps(&about("web-1", Some("u-1")), Some("tenant"), Some("e5".into())), "not the kubelet");
        assert!(!filter.keeps(&about("web-1", Some("u-1")), None, Some("e6".into())), "no reporter");
        assert!(!filter.keeps(&about("web-2", Some("u-1")), Some("kubelet"), Some("e7".into())), "another Pod");
    }
    use std::cell::RefCell;

    #[test]
    fn escape_sequences_and_overrides_are_shown_escaped() {
        assert_eq!(terminal_safe("Failed to pull image \"a/b:1\"\nnext"), "Failed to pull image \"a/b:1\"\nnext");
        assert_eq!(terminal_safe("\u{1b}]0;owned\u{7}\u{1b}[2Jok\r"), "\\u{1b}]0;owned\\u{7}\\u{1b}[2Jok\\u{d}");
        assert_eq!(terminal_safe("a\u{9b}31mb\u{202e}c\td"), "a\\u{9b}31mb\\u{202e}c\\u{9}d");
    }

    #[test]
    fn only_names_that_can_matter_are_kept() {
        let relevant = RelevantSecretNames { namespace: "prod", missing: &["regcred"] };
        assert!(relevant.keeps("prod", "anything"));
        assert!(relevant.keeps("default", "regcred"));
        assert!(relevant.keeps("default", "reg-cred"));
        assert!(!relevant.keeps("default", "tls-cert"));
    }

    #[test]
    fn lists_are_read_page_by_page() {
        let pages = [(vec!["a", "b"], "t1"), (vec!["c", "d"], "t2"), (vec!["e"], "")];
        let requests = RefCell::new(Vec::new());
        let list = |params: ListParams| {
            requests.borrow_mut().push((params.limit, params.continue_token.clone()));
            let (items, token) = &pages[requests.borrow().len() - 1];
            let page = ObjectList {
                types: Default::default(),
                metadata: ListMeta { continue_: Some((*token).to_owned()), ..Default::default() },
                items: items.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>(),
            };
            std::future::ready(Ok(page))
        };
        let kept = futures::executor::block_on(paged(2, list, |item: String| (item != "c").then_some(item))).unwrap();
        assert_eq!(kept, ["a", "b", "d", "e"]);
        assert_eq!(
            requests.into_inner(),
            [(Some(2), None), (Some(2), Some("t1".to_owned())), (Some(2), Some("t2".to_owned()))]
        );
    }
}
