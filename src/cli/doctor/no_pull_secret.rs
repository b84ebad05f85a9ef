//! The Pod lists no pull secret: its ServiceAccount got one only after the Pod was created, or
//! nothing provides one at all.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::credentials::{by_relevance, sync_state, why_not_selected};
use super::evidence::{Cause, Context, Evidence, RANK_NOT_PROVIDED, RANK_RACE};
use super::report::SHOWN;
use crate::crd::selection::selects_service_account;

/// The Pod lists no pull secret, though its ServiceAccount lists some now: it was patched after
/// the Pod was created, and admission copied nothing.
pub(super) fn service_account_patched_after_the_pod(context: &Context) -> Vec<Cause> {
    let sa_secrets = context.evidence.service_account_pull_secrets();
    if !context.pod_secrets.is_empty() || sa_secrets.is_empty() || context.uncovered_private_images().next().is_none() {
        return Vec::new();
    }
    vec![race_cause(context.evidence, &context.namespace, &context.account, &sa_secrets)]
}

/// The Pod and its ServiceAccount list no pull secret: which RegistryCredential could, and why not.
pub(super) fn nothing_provides_a_pull_secret(context: &Context) -> Vec<Cause> {
    let sa_secrets = context.evidence.service_account_pull_secrets();
    if !context.pod_secrets.is_empty() || !sa_secrets.is_empty() || context.uncovered_private_images().next().is_none()
    {
        return Vec::new();
    }
    vec![not_provided_cause(context.evidence, &context.namespace, &context.account)]
}

fn race_cause(evidence: &Evidence, namespace: &str, account: &str, sa_secrets: &[String]) -> Cause {
    let created_at = evidence.pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let patched = evidence.service_account.as_ref().and_then(pull_secrets_written);
    let created = created_at.map_or_else(|| "its creation".to_owned(), |t| t.to_string());
    // Admission copies the ServiceAccount's entries into a Pod that lists none, so an empty
    // list proves the ServiceAccount had none then. managedFields adds the time when the API
    // server kept it (it keeps none on objects created without any, like default accounts).
    let mut details = vec![
        format!(
            "the Pod lists no imagePullSecrets; the ServiceAccount admission plugin would have copied {account}'s into it, so {account} had none at {created}"
        ),
        format!("ServiceAccount {account} lists {sa_secrets:?} now: it was patched after the Pod was created"),
    ];
    match &patched {
        Some((manager, at)) if created_at.is_none_or(|c| c < *at) => {
            details.push(format!("{manager} wrote its imagePullSecrets at {at}"))
        }
        Some((manager, at)) => details.push(format!(
            "{manager} last wrote its imagePullSecrets at {at}, not after the Pod was created: is the ServiceAccount admission plugin disabled?"
        )),
        None => {}
    }
    let owner = evidence.pod.owner_references().first().map(|o| format!("{} {}", o.kind, o.name));
    let recreate = format!("kubectl delete pod {} -n {namespace}", evidence.pod.name_any());
    Cause {
        rank: RANK_RACE,
        summary: format!("the Pod was created before ServiceAccount {account} had its pull secrets"),
        details,
        commands: vec![match owner {
            Some(owner) => format!("{recreate}   # {owner} creates a new one, which gets {sa_secrets:?}"),
            None => format!("{recreate} && kubectl apply -f <its manifest>"),
        }],
    }
}

fn not_provided_cause(evidence: &Evidence, namespace: &str, account: &str) -> Cause {
    let mut details = vec![format!("neither the Pod spec nor ServiceAccount {account} lists a pull secret")];
    let mut commands = Vec::new();
    if evidence.credentials.is_empty() {
        details.push("no RegistryCredential exists to provide one".to_owned());
        commands.push(
            "kubectl explain registrycredential.spec   # declare one for the registry, selecting this namespace"
                .to_owned(),
        );
    }
    for credential in by_relevance(evidence, namespace).into_iter().take(SHOWN) {
        let reason = why_not_selected(
            credential,
            namespace,
            evidence.namespace_labels.as_ref(),
            &evidence.reserved_namespaces(),
        )
        .or_else(|| {
            (!selects_service_account(&credential.spec, account)).then(|| {
                format!(
                    "spec.serviceAccounts.names {:?} does not include {account}",
                    credential.spec.service_accounts.names
                )
            })
        })
        .unwrap_or_else(|| sync_state(credential, namespace));
        details.push(format!("RegistryCredential {}: {reason}", credential.name_any()));
        commands.push(format!("kubectl describe registrycredential {}", credential.name_any()));
    }
    if evidence.credentials.len() > SHOWN {
        details.push(format!(
            "{} more RegistryCredentials: kubectl get registrycredentials",
            evidence.credentials.len() - SHOWN
        ));
    }
    if evidence.service_account.is_none() {
        details.push(format!("ServiceAccount {account} does not exist"));
    }
    Cause {
        rank: RANK_NOT_PROVIDED,
        summary: format!("ServiceAccount {account} has no pull secret, so the Pod got none"),
        details,
        commands,
    }
}

/// The last time a field manager wrote the ServiceAccount's `imagePullSecrets`, and who.
fn pull_secrets_written(account: &ServiceAccount) -> Option<(String, Timestamp)> {
    account
        .managed_fields()
        .iter()
        .filter(|entry| {
            entry.fields_v1.as_ref().is_some_and(|fields| fields.0.to_string().contains("\"f:imagePullSecrets\""))
        })
        .filter_map(|entry| Some((entry.manager.clone().unwrap_or_default(), entry.time.as_ref()?.0)))
        .max_by_key(|(_, at)| *at)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::doctor::fixture::{account, own_list_evidence, summaries};

    #[test]
    fn no_pull_secret_when_the_pod_and_its_account_list_none() {
        let mut evidence = own_list_evidence();
        evidence.pod.spec.as_mut().unwrap().image_pull_secrets = None;
        evidence.service_account = Some(account(&[]));
        let causes = nothing_provides_a_pull_secret(&Context::new(&evidence));
        assert_eq!(summaries(&causes), ["ServiceAccount default has no pull secret, so the Pod got none"]);
        assert!(causes[0].details.contains(&"no RegistryCredential exists to provide one".to_owned()));
        assert!(
            nothing_provides_a_pull_secret(&Context::new(&own_list_evidence())).is_empty(),
            "the Pod lists its own"
        );
        evidence.service_account = Some(account(&["regcred"]));
        assert!(nothing_provides_a_pull_secret(&Context::new(&evidence)).is_empty());
        let race = service_account_patched_after_the_pod(&Context::new(&evidence));
        assert_eq!(summaries(&race), ["the Pod was created before ServiceAccount default had its pull secrets"]);
    }
}
