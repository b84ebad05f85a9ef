//! The Pod's ServiceAccount enforces mountable secrets: the API server refuses a new Pod that
//! admission injection gives a copy the ServiceAccount does not list.

use super::credentials::{Injection, injection, selecting_credentials};
use super::evidence::{Cause, Context, RANK_NEW_PODS_REFUSED};
use super::report::shell_word;
use crate::crd::selection::{
    ENFORCE_MOUNTABLE_SECRETS_ANNOTATION as ENFORCE_MOUNTABLE_SECRETS, POD_INJECTION_DISABLED, POD_INJECTION_LABEL,
};

/// New Pods under the Pod's ServiceAccount get a copy appended that the ServiceAccount, which
/// enforces mountable secrets, does not list: the API server refuses them.
pub(super) fn enforcing_account_refuses_injected_pods(context: &Context) -> Vec<Cause> {
    let (evidence, account, namespace) = (context.evidence, &context.account, &context.namespace);
    let enforces = evidence.service_account.as_ref().is_some_and(|sa| {
        sa.metadata.annotations.as_ref().and_then(|a| a.get(ENFORCE_MOUNTABLE_SECRETS)).is_some_and(|v| v == "true")
    });
    if !enforces {
        return Vec::new();
    }
    let listed = evidence.service_account_pull_secrets();
    let appended: Vec<&str> = selecting_credentials(context)
        .into_iter()
        .filter(|c| injection(c, evidence) == Injection::Active && !listed.contains(&c.spec.secret_name))
        .map(|c| c.spec.secret_name.as_str())
        .collect();
    if appended.is_empty() {
        return Vec::new();
    }
    vec![Cause {
        rank: RANK_NEW_PODS_REFUSED,
        summary: format!(
            "ServiceAccount {account} enforces mountable secrets and does not list {appended:?}: new Pods that admission injection gives it are refused"
        ),
        details: vec![
            format!(
                "{ENFORCE_MOUNTABLE_SECRETS} is \"true\": the API server refuses a Pod listing a pull secret that ServiceAccount {account} does not list"
            ),
            format!(
                "the operator adds {appended:?} to ServiceAccount {account} once the copy is in place; until then, or while a conflict, a broken source or another writer keeps it out, the RegistryCredential's status says why"
            ),
            format!(
                "labelled {POD_INJECTION_LABEL}={POD_INJECTION_DISABLED}, namespace {namespace} gets nothing appended at admission: its Pods get pull secrets from ServiceAccount patching alone"
            ),
        ],
        commands: vec![format!(
            "kubectl label namespace {} {POD_INJECTION_LABEL}={POD_INJECTION_DISABLED}",
            shell_word(namespace)
        )],
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::doctor::evidence::{Admission, Evidence};
    use crate::cli::doctor::fixture::{account, credential, own_list_evidence, summaries};

    /// A Pod of namespace shop, whose ServiceAccount enforces mountable secrets and lists nothing,
    /// where credential corp injects `regcred`.
    fn enforcing() -> Evidence {
        let mut evidence = own_list_evidence();
        let mut service_account = account(&[]);
        service_account.metadata.annotations = Some([(ENFORCE_MOUNTABLE_SECRETS.to_owned(), "true".to_owned())].into());
        evidence.service_account = Some(service_account);
        evidence.admission = Admission::Active { policy: "p".into() };
        evidence.credentials = vec![credential(&["*"], &[], None)];
        evidence
    }

    #[test]
    fn an_enforcing_account_that_does_not_list_the_injected_copy_refuses_new_pods() {
        let causes = enforcing_account_refuses_injected_pods(&Context::new(&enforcing()));
        assert_eq!(
            summaries(&causes),
            [
                "ServiceAccount default enforces mountable secrets and does not list [\"regcred\"]: new Pods that admission injection gives it are refused"
            ]
        );
        assert_eq!(causes[0].commands, ["kubectl label namespace shop regcred.dev/pod-injection=disabled"]);

        let mut listing = enforcing();
        listing.service_account = Some({
            let mut sa = listing.service_account.take().unwrap();
            sa.image_pull_secrets = account(&["regcred"]).image_pull_secrets;
            sa
        });
        assert!(enforcing_account_refuses_injected_pods(&Context::new(&listing)).is_empty(), "it lists the copy");

        let mut opted_out = enforcing();
        opted_out.namespace_labels = Some([(POD_INJECTION_LABEL.to_owned(), POD_INJECTION_DISABLED.to_owned())].into());
        assert!(enforcing_account_refuses_injected_pods(&Context::new(&opted_out)).is_empty(), "nothing appended");

        let mut not_enforcing = enforcing();
        not_enforcing.service_account = Some(account(&[]));
        assert!(enforcing_account_refuses_injected_pods(&Context::new(&not_enforcing)).is_empty());

        let mut inactive = enforcing();
        inactive.admission = Admission::NotInstalled;
        assert!(enforcing_account_refuses_injected_pods(&Context::new(&inactive)).is_empty(), "no policy runs");
    }
}
