//! The diagnosis of a Pod that cannot pull: a pure function of what `doctor` read from the cluster.
//!
//! The kubelet pulls an image with the Secrets in the Pod's own `spec.imagePullSecrets`, read at
//! each attempt. A ServiceAccount's `imagePullSecrets` reach a Pod only once, when the Pod is
//! created: the ServiceAccount admission plugin copies them into a spec that has none. So a Secret
//! created later repairs a running Pod, but a ServiceAccount patched later does not.
//!
//! Each family of causes is a module of its own with the detectors that find it, over the
//! [`Context`] they share; [`DETECTORS`] is the one list of them.

use super::cached_image::cached_image_needs_own_credential;
use super::created_before_the_secret::created_before_the_secret;
use super::credential_expired::credential_expired;
use super::credentials_refused::credentials_refused;
use super::evidence::{Cause, Context, Diagnosis, Evidence};
use super::mountable_secrets::enforcing_account_refuses_injected_pods;
use super::no_pull_secret::{nothing_provides_a_pull_secret, service_account_patched_after_the_pod};
use super::own_pull_secrets::own_pull_secrets_hide_service_account;
use super::registry_not_covered::registry_not_covered;
use super::sandbox_image::sandbox_image;
use super::secret_missing::pull_secrets_missing;
use super::secret_unusable::pull_secrets_unusable;

/// One named detector: a kind of cause, and the function that finds it.
pub(super) struct Detector {
    /// What it detects, for readers and tests; the report names causes by their summary.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) name: &'static str,
    detect: fn(&Context) -> Vec<Cause>,
}

/// Every detector, in the order they run; causes of equal rank keep it.
pub(super) const DETECTORS: &[Detector] = &[
    Detector { name: "sandbox image", detect: sandbox_image },
    Detector { name: "pull secret unreadable or unusable", detect: pull_secrets_unusable },
    Detector { name: "pull secret missing", detect: pull_secrets_missing },
    // Before `registry not covered`, of equal rank: a hidden ServiceAccount entry is the likelier fix.
    Detector { name: "own pull secrets hide the ServiceAccount's", detect: own_pull_secrets_hide_service_account },
    Detector { name: "registry not covered", detect: registry_not_covered },
    Detector { name: "ServiceAccount patched after the Pod", detect: service_account_patched_after_the_pod },
    Detector { name: "nothing provides a pull secret", detect: nothing_provides_a_pull_secret },
    Detector { name: "created before the secret", detect: created_before_the_secret },
    Detector { name: "cached image needs the Pod's own credential", detect: cached_image_needs_own_credential },
    // Before `credentials refused`, of equal rank: an expired credential is why the registry refuses.
    Detector { name: "credential expired", detect: credential_expired },
    Detector { name: "credentials refused", detect: credentials_refused },
    Detector {
        name: "enforcing ServiceAccount refuses injected Pods",
        detect: enforcing_account_refuses_injected_pods,
    },
];

pub(super) fn diagnose(evidence: &Evidence) -> Diagnosis {
    let context = Context::new(evidence);
    let mut causes: Vec<Cause> = DETECTORS.iter().flat_map(|detector| (detector.detect)(&context)).collect();
    causes.sort_by_key(|c| c.rank);
    Diagnosis { images: context.images, causes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_detector_has_its_own_name() {
        let names: BTreeSet<&str> = DETECTORS.iter().map(|d| d.name).collect();
        assert_eq!(names.len(), DETECTORS.len());
    }
}
