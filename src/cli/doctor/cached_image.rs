//! Kubernetes 1.35+: an image cached on the node serves only Pods with a credential for it.

use k8s_openapi::api::core::v1::PodSpec;

use super::evidence::{Cause, Context, RANK_NOT_PROVIDED};
use crate::credential::ImageReference;

/// The kubelet version from which an image pulled with credentials is only used by Pods that
/// have credentials for it too (KubeletEnsureSecretPulledImages, beta and on by default).
const ENSURE_SECRET_PULLED_IMAGES: (u32, u32) = (1, 35);

/// Kubernetes 1.35+: an image another Pod pulled with credentials, cached on the node, is no
/// longer usable by a Pod without its own; the kubelet pulls again, and the registry refuses.
pub(super) fn cached_image_needs_own_credential(context: &Context) -> Vec<Cause> {
    let Some(version) = context.evidence.kubelet_version.as_deref() else { return Vec::new() };
    if kubernetes_minor(version).is_none_or(|v| v < ENSURE_SECRET_PULLED_IMAGES) {
        return Vec::new();
    }
    let mut causes = Vec::new();
    for (check, reference) in context.uncovered_private_images() {
        let policy = pull_policy(&context.spec, &check.container, &reference);
        let failing = context.evidence.events.iter().any(|e| !e.is_sandbox() && e.message.contains(&check.image));
        if policy == "Always" || !failing {
            continue;
        }
        causes.push(Cause {
            rank: RANK_NOT_PROVIDED,
            summary: format!(
                "on Kubernetes 1.35+ an image cached on the node is not usable by a Pod without its own credential (container {})",
                check.container
            ),
            details: vec![
                format!(
                    "the node's kubelet is {version}: with KubeletEnsureSecretPulledImages an image pulled with credentials serves only Pods that have credentials for it; this Pod has none for {}, so the kubelet pulls {} again despite imagePullPolicy {policy}, and the registry refuses",
                    reference.registry, check.image
                ),
                "before 1.35 such a Pod started wherever another Pod had pulled the image: it worked by chance".to_owned(),
                format!("give the Pod its own pull secret for {}: see the other causes", reference.registry),
            ],
            commands: Vec::new(),
        });
    }
    causes
}

/// `(1, 35)` of `v1.35.2` or `v1.35.0-eks-1`.
fn kubernetes_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim_start_matches('v').splitn(3, '.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts.next()?.chars().take_while(char::is_ascii_digit).collect();
    Some((major, minor.parse().ok()?))
}

/// The container's imagePullPolicy, or the API server's default for its image.
fn pull_policy(spec: &PodSpec, container: &str, reference: &ImageReference) -> String {
    let set = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .find(|c| c.name == container)
        .and_then(|c| c.image_pull_policy.clone())
        .or_else(|| {
            spec.ephemeral_containers.iter().flatten().find(|c| c.name == container)?.image_pull_policy.clone()
        });
    set.unwrap_or_else(|| {
        let latest = reference.digest.is_none() && reference.tag.as_deref().is_none_or(|t| t == "latest");
        if latest { "Always" } else { "IfNotPresent" }.to_owned()
    })
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::doctor::evidence::{Evidence, PodEvent};
    use crate::cli::doctor::fixture::{pod, summaries};

    #[test]
    fn kubernetes_1_35_cached_image_needs_the_pods_own_credential() {
        let failed = PodEvent {
            reason: "Failed".into(),
            message: "Failed to pull image \"registry.corp/app:1\": 401 Unauthorized".into(),
            warning: true,
            count: 2,
        };
        let evidence = |version: &str, policy: Option<&str>| Evidence {
            pod: pod(
                serde_json::json!({"nodeName": "node-1",
                                   "containers": [{"name": "app", "image": "registry.corp/app:1", "imagePullPolicy": policy}]}),
                None,
            ),
            events: vec![failed.clone()],
            kubelet_version: Some(version.to_owned()),
            ..Default::default()
        };
        let on_1_35 = evidence("v1.35.2", None);
        let causes = cached_image_needs_own_credential(&Context::new(&on_1_35));
        assert_eq!(
            summaries(&causes),
            [
                "on Kubernetes 1.35+ an image cached on the node is not usable by a Pod without its own credential (container app)"
            ]
        );
        assert!(causes[0].details[0].contains("KubeletEnsureSecretPulledImages"));
        assert!(causes[0].details[0].contains("despite imagePullPolicy IfNotPresent"));
        for quiet in [evidence("v1.34.5", None), evidence("v1.36.0", Some("Always"))] {
            assert!(cached_image_needs_own_credential(&Context::new(&quiet)).is_empty());
        }
        assert_eq!(kubernetes_minor("v1.35.0-eks-4f4795d"), Some((1, 35)));
        assert_eq!(kubernetes_minor("1.9"), Some((1, 9)));
        assert_eq!(kubernetes_minor("unknown"), None);
    }
}
