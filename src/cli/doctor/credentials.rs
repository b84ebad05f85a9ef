//! The RegistryCredentials as they bear on the Pod: which select it, whether they inject their
//! copy, and why one does not serve it.

use std::collections::BTreeMap;

use kube::ResourceExt;

use super::evidence::{Admission, Context, Evidence, one_line};
use crate::crd::selection::{SYSTEM_NAMESPACES, glob_matches, selects_namespace_reserving, selects_service_account};
use crate::crd::{NamespaceFilter, RegistryCredential, RegistryCredentialSpec};
use crate::credential::{ImageReference, key_matches_image, normalize_registry_key};

/// Whether a RegistryCredential that selects a Pod's namespace and ServiceAccount injects its copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Injection {
    Active,
    /// `spec.injectIntoPods: false`.
    OptedOut,
    /// The namespace is labelled out of injection.
    NamespaceOptedOut,
    Deleting,
    PolicyInactive,
}

/// How `credential` fares with the admission policy for Pods in the evidence's namespace.
pub(super) fn injection(credential: &RegistryCredential, evidence: &Evidence) -> Injection {
    let labels = evidence.namespace_labels.clone().unwrap_or_default();
    if credential.metadata.deletion_timestamp.is_some() {
        Injection::Deleting
    } else if !credential.spec.inject_into_pods {
        Injection::OptedOut
    } else if !credential.spec.injects_into(&labels) {
        Injection::NamespaceOptedOut
    } else if matches!(evidence.admission, Admission::Active { .. }) {
        Injection::Active
    } else {
        Injection::PolicyInactive
    }
}

/// The RegistryCredentials that select the Pod's namespace and ServiceAccount, by the rules the
/// controller and the admission policy share.
pub(super) fn selecting_credentials<'e>(context: &Context<'e>) -> Vec<&'e RegistryCredential> {
    let labels = context.evidence.namespace_labels.clone().unwrap_or_default();
    let reserved = context.evidence.reserved_namespaces();
    let (namespace, account) = (&context.namespace, &context.account);
    context
        .evidence
        .credentials
        .iter()
        .filter(|c| c.spec.selects_pods_of(namespace, &labels, account, &reserved))
        .collect()
}

/// The RegistryCredentials, those nearest to serving this Pod first: selecting its namespace and
/// ServiceAccount, then its namespace, then naming it exactly; among equals, those whose
/// registries cover one of its images.
pub(super) fn by_relevance<'e>(evidence: &'e Evidence, namespace: &str) -> Vec<&'e RegistryCredential> {
    let spec = evidence.pod.spec.clone().unwrap_or_default();
    let account = spec.service_account_name.clone().unwrap_or_else(|| "default".to_owned());
    let images: Vec<ImageReference> =
        spec.containers.iter().filter_map(|c| ImageReference::parse(c.image.as_deref()?).ok()).collect();
    let mut credentials: Vec<&RegistryCredential> = evidence.credentials.iter().collect();
    credentials.sort_by_key(|credential| {
        let selected = why_not_selected(
            credential,
            namespace,
            evidence.namespace_labels.as_ref(),
            &evidence.reserved_namespaces(),
        )
        .is_none();
        let distance = match (selected, selects_service_account(&credential.spec, &account)) {
            (true, true) => 0,
            (true, false) => 1,
            _ if credential.spec.namespaces.include.iter().any(|p| p == namespace) => 2,
            _ => 3,
        };
        let covers = credential
            .spec
            .registries
            .iter()
            .filter_map(|r| normalize_registry_key(r).ok())
            .any(|key| images.iter().any(|image| key_matches_image(&key.canonical, image)));
        (distance, !covers, credential.name_any())
    });
    credentials
}

/// Why the credential does not select the namespace, or `None` when it does. The decision is
/// `selects_namespace`'s; this only finds which part of the spec it turned on.
pub(super) fn why_not_selected(
    credential: &RegistryCredential,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
    reserved: &[String],
) -> Option<String> {
    let spec = &credential.spec;
    let empty = BTreeMap::new();
    if selects_namespace_reserving(spec, namespace, labels.unwrap_or(&empty), reserved) {
        return None;
    }
    let filter = &spec.namespaces;
    let by_include = RegistryCredentialSpec {
        namespace_selector: None,
        namespaces: NamespaceFilter { include: filter.include.clone(), exclude: Vec::new() },
        ..spec.clone()
    };
    if !selects_namespace_reserving(&by_include, namespace, &empty, reserved) {
        return Some(if SYSTEM_NAMESPACES.contains(&namespace) {
            format!("{namespace} is a system namespace, selected only by an exact include entry")
        } else if reserved.iter().any(|r| r == namespace) {
            format!("{namespace} holds credential sources, selected only by an exact include entry")
        } else {
            format!("spec.namespaces.include {:?} does not match {namespace}", filter.include)
        });
    }
    if let Some(pattern) = filter.exclude.iter().find(|pattern| glob_matches(pattern, namespace)) {
        return Some(format!("spec.namespaces.exclude entry {pattern:?} matches {namespace}"));
    }
    let Some(selector) = &spec.namespace_selector else {
        return Some(format!("it does not select {namespace}"));
    };
    let wanted = serde_json::to_string(selector).unwrap_or_default();
    let has = serde_json::to_string(labels.unwrap_or(&empty)).unwrap_or_default();
    Some(format!("spec.namespaceSelector {wanted} does not match the labels of {namespace} {has}"))
}

/// What the credential's status says about the namespace it selects.
pub(super) fn sync_state(credential: &RegistryCredential, namespace: &str) -> String {
    let status = credential.status.as_ref();
    if let Some(failure) = status.and_then(|s| s.failures.iter().find(|f| f.namespace == namespace)) {
        // Status messages quote what tenants chose; one line all the same, as Events are.
        return format!("it selects {namespace} but failed there: {}: {}", failure.reason, one_line(&failure.message));
    }
    let ready = status
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| format!("Ready={} ({}: {})", c.status, c.reason, one_line(&c.message)));
    match ready {
        Some(ready) => format!("it selects {namespace}; {ready}: is the operator running?"),
        None => format!("it selects {namespace} but has no status yet: is the operator running?"),
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::doctor::fixture::credential;

    #[test]
    fn why_a_namespace_is_not_selected() {
        let team = |t: &str| BTreeMap::from([("team".to_owned(), t.to_owned())]);
        let cases = [
            (
                credential(&["team-*"], &[], None),
                "production",
                "spec.namespaces.include [\"team-*\"] does not match production",
            ),
            (
                credential(&["*"], &["prod*"], None),
                "production",
                "spec.namespaces.exclude entry \"prod*\" matches production",
            ),
            (
                credential(&["*"], &[], None),
                "kube-system",
                "kube-system is a system namespace, selected only by an exact include entry",
            ),
            (
                credential(&["*"], &[], Some("payments")),
                "production",
                "spec.namespaceSelector {\"matchLabels\":{\"team\":\"payments\"}} does not match the labels of production {\"team\":\"search\"}",
            ),
        ];
        for (credential, namespace, expected) in cases {
            assert_eq!(why_not_selected(&credential, namespace, Some(&team("search")), &[]).as_deref(), Some(expected));
        }
        assert_eq!(
            why_not_selected(&credential(&["*"], &[], Some("payments")), "production", Some(&team("payments")), &[]),
            None
        );
    }
}
