//! A pull secret the Pod names that is not in its namespace: misnamed, in another namespace, or
//! never made.

use std::collections::BTreeSet;

use kube::ResourceExt;

use super::credentials::{by_relevance, sync_state, why_not_selected};
use super::evidence::{Cause, Context, Evidence, RANK_SECRET_MISSING, SecretLookup};
use super::report::{SHOWN, copy_secret, listed, shell_word};
use crate::cli::near_miss::near_misses;
use crate::crd::RegistryCredential;

/// A pull secret of the Pod that is not in its namespace.
pub(super) fn pull_secrets_missing(context: &Context) -> Vec<Cause> {
    context
        .pod_secrets
        .iter()
        .filter(|name| matches!(context.evidence.secrets.get(*name), Some(SecretLookup::Missing) | None))
        .map(|name| missing_cause(name, &context.namespace, context.evidence))
        .collect()
}

/// A Secret the Pod names that is not in its namespace: misnamed, elsewhere, or never made.
fn missing_cause(name: &str, namespace: &str, evidence: &Evidence) -> Cause {
    let meant = MeantSecrets::find(name, namespace, &evidence.secret_names);
    let (mut details, mut commands) = meant.details_and_copies(name, namespace);
    if commands.is_empty() {
        // The name is the Pod's to choose, and the API server does not hold it to a Secret's rules.
        let name = shell_word(name);
        commands.push(format!(
            "kubectl create secret docker-registry {name} -n {namespace} --docker-server=<registry> --docker-username=<user> --docker-password=<password>"
        ));
    }
    let summary = meant.summary(name, namespace);
    details.extend(makers_elsewhere(name, namespace, evidence));
    details.push(
        "the kubelet re-reads pull secrets at every attempt: once the Secret exists, the next retry pulls".to_owned(),
    );
    Cause { rank: RANK_SECRET_MISSING, summary, details, commands }
}

/// The Secrets that may be the one a missing name means, from the Secret names in the cluster.
struct MeantSecrets<'e> {
    /// Near misses in the Pod's namespace, closest first.
    close_here: Vec<&'e str>,
    /// The namespaces that hold a Secret of exactly that name.
    same_name_elsewhere: Vec<&'e str>,
    /// `(namespace, name)` of near misses in other namespaces, closest first.
    close_elsewhere: Vec<(&'e str, &'e str)>,
}

impl<'e> MeantSecrets<'e> {
    fn find(name: &str, namespace: &str, secret_names: &'e [(String, String)]) -> MeantSecrets<'e> {
        let here: Vec<&str> = secret_names.iter().filter(|(ns, _)| ns == namespace).map(|(_, n)| n.as_str()).collect();
        let same_name_elsewhere: Vec<&str> =
            secret_names.iter().filter(|(ns, n)| n == name && ns != namespace).map(|(ns, _)| ns.as_str()).collect();
        let others: BTreeSet<&str> =
            secret_names.iter().filter(|(ns, _)| ns != namespace).map(|(_, n)| n.as_str()).collect();
        let close_elsewhere: Vec<(&str, &str)> = near_misses(name, others)
            .into_iter()
            .flat_map(|candidate| {
                secret_names
                    .iter()
                    .filter(move |(ns, n)| n == candidate && ns != namespace)
                    .map(|(ns, n)| (ns.as_str(), n.as_str()))
            })
            .collect();
        MeantSecrets { close_here: near_misses(name, here), same_name_elsewhere, close_elsewhere }
    }

    /// What each kind of candidate tells, and the commands that copy the likeliest of each kind
    /// under the missing name.
    fn details_and_copies(&self, name: &str, namespace: &str) -> (Vec<String>, Vec<String>) {
        let mut details = Vec::new();
        let mut commands = Vec::new();
        if let Some(candidate) = self.close_here.first() {
            details.push(format!("Secret {candidate:?} exists in {namespace}: a near miss of {name:?}"));
            commands.extend(copy_secret(namespace, candidate, namespace, name));
        }
        if !self.same_name_elsewhere.is_empty() {
            details.push(format!(
                "Secret {name:?} exists in {}: the kubelet only reads Secrets from the Pod's own namespace",
                listed(&self.same_name_elsewhere)
            ));
            commands.extend(copy_secret(self.same_name_elsewhere[0], name, namespace, name));
        }
        for (other_namespace, candidate) in self.close_elsewhere.iter().take(SHOWN) {
            details.push(format!(
                "Secret {candidate:?} in {other_namespace} is a near miss of {name:?}, in another namespace"
            ));
        }
        if let Some((other_namespace, candidate)) = self.close_elsewhere.first() {
            commands.extend(copy_secret(other_namespace, candidate, namespace, name));
        }
        (details, commands)
    }

    fn summary(&self, name: &str, namespace: &str) -> String {
        match (self.close_here.first(), self.same_name_elsewhere.is_empty(), self.close_elsewhere.first()) {
            (Some(candidate), _, _) => {
                format!("pull secret {name:?} does not exist in namespace {namespace}; did you mean {candidate:?}?")
            }
            (None, false, _) => format!("pull secret {name:?} is in another namespace, not in {namespace}"),
            (None, true, Some((other_namespace, candidate))) => format!(
                "pull secret {name:?} does not exist in namespace {namespace}; did you mean {candidate:?} (in {other_namespace})?"
            ),
            (None, true, None) => format!("pull secret {name:?} does not exist in namespace {namespace}"),
        }
    }
}

/// The RegistryCredentials that make a Secret of that name, and why not in the Pod's namespace.
fn makers_elsewhere(name: &str, namespace: &str, evidence: &Evidence) -> Vec<String> {
    let makers: Vec<&RegistryCredential> =
        by_relevance(evidence, namespace).into_iter().filter(|c| c.spec.secret_name == name).collect();
    let mut details = Vec::new();
    for credential in makers.iter().take(SHOWN) {
        details.push(format!(
            "RegistryCredential {} makes Secret {name:?}, but not here: {}",
            credential.name_any(),
            why_not_selected(
                credential,
                namespace,
                evidence.namespace_labels.as_ref(),
                &evidence.reserved_namespaces()
            )
            .unwrap_or_else(|| sync_state(credential, namespace))
        ));
    }
    if makers.len() > SHOWN {
        details.push(format!("{} more RegistryCredentials make Secret {name:?} elsewhere", makers.len() - SHOWN));
    }
    details
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::doctor::fixture::{own_list_evidence, pod, summaries};

    #[test]
    fn pull_secrets_missing_with_the_near_miss() {
        let mut evidence = own_list_evidence();
        evidence.secrets.insert("quay-pull".into(), SecretLookup::Missing);
        evidence.secret_names = vec![("shop".into(), "quay-pul".into())];
        let causes = pull_secrets_missing(&Context::new(&evidence));
        assert_eq!(
            summaries(&causes),
            ["pull secret \"quay-pull\" does not exist in namespace shop; did you mean \"quay-pul\"?"]
        );
        assert_eq!(causes[0].rank, RANK_SECRET_MISSING);
    }

    #[test]
    fn a_secret_name_the_pod_chose_is_one_word_in_the_command() {
        let mut evidence = own_list_evidence();
        evidence.pod = pod(
            serde_json::json!({"imagePullSecrets": [{"name": "x; reboot"}],
                               "containers": [{"name": "app", "image": "registry.corp/app:1"}]}),
            None,
        );
        let causes = pull_secrets_missing(&Context::new(&evidence));
        let command = &causes[0].commands[0];
        assert!(command.starts_with("kubectl create secret docker-registry 'x; reboot' -n shop "), "{command}");
    }
}
