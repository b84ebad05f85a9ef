//! Every image is covered, yet the registry refuses the credentials the kubelet sends.

use super::evidence::{Cause, Context, RANK_REFUSED};

/// Every image is covered, yet the registry answered 401/403 to a pull.
pub(super) fn credentials_refused(context: &Context) -> Vec<Cause> {
    let images = &context.images;
    let all_covered = !images.is_empty() && images.iter().all(|c| c.covered_by.is_some());
    let refused = context.evidence.events.iter().any(|e| {
        !e.is_sandbox() && e.message.contains("pull") && (e.message.contains("401") || e.message.contains("403"))
    });
    if !(all_covered && refused) {
        return Vec::new();
    }
    vec![Cause {
        rank: RANK_REFUSED,
        summary: "the registry refused the credentials the kubelet sent".to_owned(),
        details: vec![
            "every image is covered by a pull secret, yet a pull failed with 401/403: the password or token is wrong, expired, or lacks pull rights on the repository".to_owned(),
        ],
        commands: vec![format!(
            "kubectl create secret docker-registry <secret> -n {} --docker-server=<registry> --docker-username=<user> --docker-password=<new token> --dry-run=client -o yaml | kubectl apply -f -",
            context.namespace
        )],
    }]
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::doctor::evidence::PodEvent;
    use crate::cli::doctor::fixture::{own_list_evidence, pull_secret, summaries};

    #[test]
    fn credentials_refused_when_every_image_is_covered() {
        let mut evidence = own_list_evidence();
        evidence.secrets.insert("quay-pull".into(), pull_secret("registry.corp", "2025-12-01T00:00:00Z"));
        evidence.events = vec![PodEvent {
            reason: "Failed".into(),
            message: "Failed to pull image \"registry.corp/app:1\": 403 Forbidden".into(),
            warning: true,
            count: 1,
        }];
        let causes = credentials_refused(&Context::new(&evidence));
        assert_eq!(summaries(&causes), ["the registry refused the credentials the kubelet sent"]);
        evidence.events.clear();
        assert!(credentials_refused(&Context::new(&evidence)).is_empty());
    }
}
