//! The container images: references that do not parse, and private images the pod's pull
//! secrets do not cover.

use crate::cli::lint::finding::{Code, Report, Severity};
use crate::cli::lint::manifest::FieldPath;
use crate::cli::lint::set::{ContainerImage, ManifestSet};
use crate::credential::{ImageReference, covering_key};

/// RC014: a container image that is not an image reference.
pub(super) fn invalid_image(set: &ManifestSet, report: &mut Report) {
    for pod in set.pods() {
        for container in &pod.images {
            if let Err(error) = ImageReference::parse(container.image) {
                report.findings.push(pod.object.finding(
                    Code::InvalidImage,
                    Severity::Error,
                    &container.path,
                    error.to_string(),
                    "write the image as `[registry/]repository[:tag][@digest]`, repository in lowercase".to_owned(),
                ));
            }
        }
    }
}

/// The images of a pod that may need a credential: they parse, and are not on Docker Hub, whose
/// images are mostly public, so a missing credential is not a finding there.
fn private_images<'p>(images: &'p [ContainerImage]) -> impl Iterator<Item = (&'p FieldPath, &'p str, ImageReference)> {
    images.iter().filter_map(|container| {
        let reference = ImageReference::parse(container.image).ok().filter(|r| !r.is_docker_hub())?;
        Some((&container.path, container.image, reference))
    })
}

/// RC013: a private image, and neither the pod spec nor its ServiceAccount lists a pull secret.
pub(super) fn no_pull_secrets(set: &ManifestSet, report: &mut Report) {
    for pod in set.pods() {
        if !pod.names.is_empty() {
            continue;
        }
        let (object, account) = (pod.object, pod.account);
        for (path, image, reference) in private_images(&pod.images) {
            report.findings.push(object.finding(
                Code::NoPullSecrets,
                Severity::Warning,
                path,
                format!(
                    "image {image:?} is from registry {}, and neither the pod spec nor ServiceAccount {account} lists a pull secret; a private registry refuses the anonymous pull",
                    reference.registry
                ),
                set.no_pull_secret_fix(&reference, object.namespace, account),
            ));
        }
    }
}

/// RC012: a private image that no key of the pod's pull secrets matches, when the set holds
/// them all.
pub(super) fn registry_not_covered(set: &ManifestSet, report: &mut Report) {
    for pod in set.pods() {
        let Some(keys) = &pod.keys else { continue };
        if pod.names.is_empty() {
            continue;
        }
        let names: Vec<&str> = pod.names.iter().copied().collect();
        for (path, image, reference) in private_images(&pod.images) {
            if covering_key(keys.iter().map(String::as_str), &reference).is_some() {
                continue;
            }
            report.findings.push(pod.object.finding(
                Code::RegistryNotCovered,
                Severity::Warning,
                path,
                format!(
                    "no key of its pull secrets {names:?} matches image {image:?} (keys: {keys:?}); the kubelet pulls it anonymously"
                ),
                format!("add an entry for {:?} to one of {names:?}, or a pull secret that has one", reference.registry),
            ));
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::lint::check::fixture::{CORP, DOCKER_CONFIG_JSON, found, pod, run, secret};

    #[test]
    fn invalid_image_references() {
        let report = run(invalid_image, &pod("app", "ns", &[], "Registry.corp/App:1"));
        assert_eq!(found(&report), [("RC014", Severity::Error, 7, "spec.containers[0].image".to_owned())]);
        assert!(found(&run(invalid_image, &pod("app", "ns", &[], "registry.corp/app:1"))).is_empty());
    }

    #[test]
    fn no_pull_secrets_for_a_private_registry_only() {
        let report = run(no_pull_secrets, &pod("app", "ns", &[], "registry.corp/app:1"));
        assert_eq!(found(&report), [("RC013", Severity::Warning, 7, "spec.containers[0].image".to_owned())]);
        assert!(found(&run(no_pull_secrets, &pod("app", "ns", &[], "nginx:1.27"))).is_empty(), "Docker Hub");
        let account = "---\nkind: ServiceAccount\nmetadata: {name: default, namespace: ns}\nimagePullSecrets: [{name: regcred}]\n";
        let yaml = pod("app", "ns", &[], "registry.corp/app:1") + account;
        assert!(found(&run(no_pull_secrets, &yaml)).is_empty(), "the ServiceAccount's count");
    }

    #[test]
    fn registry_not_covered_by_the_keys_of_the_set() {
        let quay = r#"{"auths":{"quay.io":{"username":"u","password":"p"}}}"#;
        let yaml =
            secret("regcred", "ns", DOCKER_CONFIG_JSON, quay) + &pod("app", "ns", &["regcred"], "registry.corp/app:1");
        let report = run(registry_not_covered, &yaml);
        assert_eq!(found(&report), [("RC012", Severity::Warning, 14, "spec.containers[0].image".to_owned())]);
        let covered =
            secret("regcred", "ns", DOCKER_CONFIG_JSON, CORP) + &pod("app", "ns", &["regcred"], "registry.corp/app:1");
        assert!(found(&run(registry_not_covered, &covered)).is_empty());
        let unknown = pod("app", "ns", &["elsewhere"], "registry.corp/app:1");
        assert!(found(&run(registry_not_covered, &unknown)).is_empty(), "keys the set does not hold are not judged");
    }
}
