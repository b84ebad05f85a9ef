//! The Pod was created before the copy of a RegistryCredential that selects it existed.

use kube::ResourceExt;

use super::credentials::{Injection, injection, selecting_credentials};
use super::evidence::{Cause, Context, RANK_RACE, SecretLookup};
use super::report::recreate_commands;

/// Case 3: the Pod was created before the copy of a RegistryCredential that selects it existed; a
/// Pod's imagePullSecrets never change after creation.
pub(super) fn created_before_the_secret(context: &Context) -> Vec<Cause> {
    let evidence = context.evidence;
    let Some(pod_created) = evidence.pod.metadata.creation_timestamp.as_ref().map(|t| t.0) else { return Vec::new() };
    // A Pod that lists none while its ServiceAccount lists some now is the race `no pull secret`
    // explains; and a Pod whose images are all covered needs nothing.
    let race = context.pod_secrets.is_empty() && !evidence.service_account_pull_secrets().is_empty();
    if race || context.uncovered_private_images().next().is_none() {
        return Vec::new();
    }
    let mut causes = Vec::new();
    for credential in selecting_credentials(context) {
        let secret = &credential.spec.secret_name;
        if context.pod_secrets.contains(secret) {
            continue;
        }
        let Some(SecretLookup::Found { created: Some(copy_created), .. }) = evidence.secrets.get(secret) else {
            continue;
        };
        if *copy_created <= pod_created {
            continue;
        }
        let now = match injection(credential, evidence) {
            Injection::Active => format!("admission injection gives {secret:?} to a Pod created now"),
            _ => format!(
                "a Pod created now that lists no pull secrets gets {secret:?} from ServiceAccount {}",
                context.account
            ),
        };
        causes.push(Cause {
            rank: RANK_RACE,
            summary: format!(
                "the Pod was created before Secret {secret:?} of RegistryCredential {} existed",
                credential.name_any()
            ),
            details: vec![
                format!("the Pod was created at {pod_created}, the Secret at {copy_created}"),
                "a Pod's imagePullSecrets never change after creation: neither ServiceAccount patching nor admission injection reaches a Pod that exists already".to_owned(),
                now,
            ],
            commands: recreate_commands(context),
        });
    }
    causes
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::doctor::evidence::Admission;
    use crate::cli::doctor::fixture::{credential, own_list_evidence, pull_secret, summaries};

    #[test]
    fn case_3_created_before_the_secret_existed_with_the_command_that_recreates_it() {
        let mut evidence = own_list_evidence();
        evidence.admission = Admission::Active { policy: "p".into() };
        evidence.credentials = vec![credential(&["*"], &[], None)];
        let causes = created_before_the_secret(&Context::new(&evidence));
        assert_eq!(
            summaries(&causes),
            ["the Pod was created before Secret \"regcred\" of RegistryCredential corp existed"]
        );
        assert_eq!(
            causes[0].commands,
            [
                "kubectl delete pod web-1 -n shop   # ReplicaSet web-5d9c creates it again",
                "kubectl rollout restart deployment/web -n shop   # every Pod of it, when they all predate the fix",
            ]
        );
        assert!(causes[0].details.contains(&"admission injection gives \"regcred\" to a Pod created now".to_owned()));

        let mut bare = own_list_evidence();
        bare.credentials = vec![credential(&["*"], &[], None)];
        bare.pod.metadata.owner_references = None;
        let causes = created_before_the_secret(&Context::new(&bare));
        assert_eq!(
            causes[0].commands,
            [
                "kubectl delete pod web-1 -n shop && kubectl apply -f <its manifest>   # a bare Pod: nothing creates it again"
            ]
        );

        let mut later = own_list_evidence();
        later.credentials = vec![credential(&["*"], &[], None)];
        later.secrets.insert("regcred".into(), pull_secret("registry.corp", "2025-12-31T00:00:00Z"));
        assert!(created_before_the_secret(&Context::new(&later)).is_empty(), "the copy was there first");
    }
}
