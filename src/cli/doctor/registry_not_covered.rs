//! An image that no key of the Pod's usable pull secrets matches, as the kubelet matches them.

use std::collections::BTreeMap;

use super::evidence::{Cause, Context, RANK_NOT_COVERED};
use super::report::check_secret_command;
use crate::credential::pull_secret::{DOCKER_CONFIG_JSON_KEY, PullSecretReading};
use crate::credential::{ImageReference, key_matches_image, normalize_registry_key};

/// An image that no key of the Pod's usable pull secrets matches.
pub(super) fn registry_not_covered(context: &Context) -> Vec<Cause> {
    let (evidence, namespace, pod_secrets, readings) =
        (context.evidence, &context.namespace, &context.pod_secrets, &context.readings);
    let mut causes = Vec::new();
    for check in &context.images {
        let Ok(registry) = &check.registry else { continue };
        let Ok(reference) = ImageReference::parse(&check.image) else { continue };
        let failing = evidence.events.iter().any(|e| e.message.contains(&check.image));
        // Docker Hub images are mostly public: without a failed pull there is nothing to explain.
        if check.covered_by.is_some() || (reference.is_docker_hub() && !failing) {
            continue;
        }
        if pod_secrets.is_empty() {
            continue;
        }
        let usable: Vec<&str> =
            pod_secrets.iter().map(String::as_str).filter(|n| readings.get(n).is_some_and(|r| r.is_usable())).collect();
        if usable.is_empty() {
            continue;
        }
        let keys: Vec<String> = usable.iter().filter_map(|n| readings[n].kubelet_keys()).flatten().collect();
        let canonical = canonical_key_that_would_cover(&usable, readings, &reference);
        let mut details = vec![format!(
            "the kubelet matches {:?} against the keys {keys:?} of {usable:?}: host parts, port and path prefix must all match",
            reference.name()
        )];
        if let Some((secret, key, canonical)) = &canonical {
            details.push(format!(
                "key {key:?} of {secret:?} would cover it in its canonical form {canonical:?}: the kubelet reads it differently"
            ));
        }
        let target = canonical.as_ref().map_or(usable[0], |(secret, _, _)| secret.as_str());
        causes.push(Cause {
            rank: RANK_NOT_COVERED,
            summary: format!("no pull secret of the Pod covers registry {registry} (container {})", check.container),
            details,
            commands: vec![
                check_secret_command(target, namespace, DOCKER_CONFIG_JSON_KEY),
                format!(
                    "kubectl create secret docker-registry {target} -n {namespace} --docker-server={registry} --docker-username=<user> --docker-password=<password> --dry-run=client -o yaml | kubectl apply -f -"
                ),
            ],
        });
    }
    causes
}

/// A key of the usable secrets that, written canonically, would cover the image.
fn canonical_key_that_would_cover(
    usable: &[&str],
    readings: &BTreeMap<&str, PullSecretReading>,
    image: &ImageReference,
) -> Option<(String, String, String)> {
    usable.iter().find_map(|secret| {
        let PullSecretReading::Config { registry_keys: Some(keys), .. } = &readings[secret] else { return None };
        keys.iter().find_map(|key| {
            let canonical = normalize_registry_key(key).ok()?.canonical;
            key_matches_image(&canonical, image).then(|| ((*secret).to_owned(), key.clone(), canonical))
        })
    })
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::doctor::fixture::{own_list_evidence, summaries};

    #[test]
    fn no_suggested_command_prints_secret_data() {
        let evidence = own_list_evidence();
        let causes = registry_not_covered(&Context::new(&evidence));
        let reading: Vec<&String> =
            causes.iter().flat_map(|c| &c.commands).filter(|c| c.contains("base64 -d")).collect();
        assert!(!reading.is_empty());
        for command in reading {
            assert!(command.contains("| regcred-operator normalize >/dev/null"), "{command}");
        }
    }

    #[test]
    fn registry_not_covered_by_the_pods_own_pull_secrets() {
        let causes = registry_not_covered(&Context::new(&own_list_evidence()));
        assert_eq!(summaries(&causes), ["no pull secret of the Pod covers registry registry.corp (container app)"]);
        assert!(causes[0].details[0].contains("against the keys [\"quay.io\"] of [\"quay-pull\"]"), "{:?}", causes[0]);
    }
}
