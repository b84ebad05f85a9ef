//! The Pod lists pull secrets of its own, so the ServiceAccount's never reached it.

use super::credentials::{Injection, injection, selecting_credentials};
use super::evidence::{Cause, Context, ImageCheck, RANK_NOT_COVERED};
use super::report::{add_to_template_commands, recreate_commands};
use crate::credential::ImageReference;

/// Case 2: the Pod lists pull secrets of its own, so its ServiceAccount's never reached it.
pub(super) fn own_pull_secrets_hide_service_account(context: &Context) -> Vec<Cause> {
    let (evidence, account) = (context.evidence, &context.account);
    let hidden: Vec<String> =
        evidence.service_account_pull_secrets().into_iter().filter(|n| !context.pod_secrets.contains(n)).collect();
    let uncovered: Vec<(&ImageCheck, ImageReference)> = context.uncovered_private_images().collect();
    if context.pod_secrets.is_empty() || hidden.is_empty() || uncovered.is_empty() {
        return Vec::new();
    }
    let mut details = vec![format!(
        "the ServiceAccount admission plugin copies {account}'s imagePullSecrets {hidden:?} only into a Pod that lists none; this one lists {:?}, and the kubelet uses the Pod's own only",
        context.pod_secrets
    )];
    for (check, reference) in &uncovered {
        let covering = hidden
            .iter()
            .find(|n| context.readings.get(n.as_str()).is_some_and(|r| r.covering_key(reference).is_some()));
        if let Some(secret) = covering {
            details.push(format!(
                "{secret:?} of ServiceAccount {account} covers registry {} (container {})",
                reference.registry, check.container
            ));
        }
    }
    let injected: Vec<&str> = selecting_credentials(context)
        .into_iter()
        .filter(|c| injection(c, evidence) == Injection::Active && hidden.contains(&c.spec.secret_name))
        .map(|c| c.spec.secret_name.as_str())
        .collect();
    let commands = if injected.is_empty() {
        details.push(format!(
            "list {hidden:?} in the imagePullSecrets of the Pod's template too, or let a RegistryCredential with admission injection (Kubernetes 1.36+) append its copy to Pods that list their own"
        ));
        add_to_template_commands(context, &hidden)
    } else {
        details.push(format!(
            "admission injection appends {injected:?} also to Pods that list their own: a Pod created again gets it"
        ));
        recreate_commands(context)
    };
    vec![Cause {
        rank: RANK_NOT_COVERED,
        summary: format!("the Pod's own pull secrets hide ServiceAccount {account}'s {hidden:?}"),
        details,
        commands,
    }]
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::doctor::evidence::Admission;
    use crate::cli::doctor::fixture::{credential, own_list_evidence, pull_secret, summaries};

    #[test]
    fn case_2_the_pods_own_pull_secrets_hide_the_service_accounts() {
        let evidence = own_list_evidence();
        let causes = own_pull_secrets_hide_service_account(&Context::new(&evidence));
        assert_eq!(summaries(&causes), ["the Pod's own pull secrets hide ServiceAccount default's [\"regcred\"]"]);
        let cause = &causes[0];
        assert!(
            cause
                .details
                .iter()
                .any(|d| d == "\"regcred\" of ServiceAccount default covers registry registry.corp (container app)")
        );
        assert_eq!(
            cause.commands,
            [
                r#"kubectl patch deployment web -n shop --type=json -p '[{"op":"add","path":"/spec/template/spec/imagePullSecrets/-","value":{"name":"regcred"}}]'"#
            ]
        );

        let mut bare = own_list_evidence();
        bare.pod.metadata.owner_references = None;
        let causes = own_pull_secrets_hide_service_account(&Context::new(&bare));
        assert_eq!(
            causes[0].commands,
            [
                "kubectl delete pod web-1 -n shop && kubectl apply -f <its manifest>   # after adding [\"regcred\"] to its imagePullSecrets"
            ]
        );

        // With injection, a Pod created again gets the copy appended to its own list.
        let mut injected = own_list_evidence();
        injected.admission = Admission::Active { policy: "p".into() };
        injected.credentials = vec![credential(&["*"], &[], None)];
        let causes = own_pull_secrets_hide_service_account(&Context::new(&injected));
        assert!(causes[0].commands[0].starts_with("kubectl delete pod web-1 -n shop"), "{:?}", causes[0].commands);

        // Nothing hidden when the Pod lists none, or when its own cover every image.
        let mut none = own_list_evidence();
        none.pod.spec.as_mut().unwrap().image_pull_secrets = None;
        assert!(own_pull_secrets_hide_service_account(&Context::new(&none)).is_empty());
        let mut covered = own_list_evidence();
        covered.secrets.insert("quay-pull".into(), pull_secret("registry.corp", "2025-12-01T00:00:00Z"));
        assert!(own_pull_secrets_hide_service_account(&Context::new(&covered)).is_empty());
    }
}
