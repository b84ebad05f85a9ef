//! Why a RegistryCredential, or one of its namespaces, is or is not synced: one typed reason
//! behind the Ready condition, `status.failures`, Events and the failure metric. The strings are
//! stable API: scripts, alerts and `kubectl wait` read them.

use std::fmt;
use std::str::FromStr;

/// A condition, failure or Event reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Reason {
    /// Every selected namespace holds the current copy.
    Synced,
    /// Copies and entries are still being written; `Reconciling` until every namespace is done.
    Progressing,
    /// Some selected namespaces failed; `status.failures` says which and why.
    SyncFailed,
    /// The source Secret is in a namespace the operator does not trust for sources.
    SourceNotTrusted,
    /// The source Secret does not exist.
    SourceNotFound,
    /// The source Secret holds no usable credential.
    SourceInvalid,
    /// The credential expired, as its source states (`status.expiresAt`); copies stay in place.
    Expired,
    /// The credential provider source names no provider of the operator's config, an image its `matchImages` does not cover, or a ServiceAccount where the provider takes none (or none where it requires one).
    ProviderNotConfigured,
    /// The credential provider's plugin is not in the operator's plugin directory.
    ProviderNotFound,
    /// The credential provider's plugin gave no answer within the timeout and was killed.
    ProviderTimedOut,
    /// The credential provider's plugin exited non-zero (its stderr is counted, never shown).
    ProviderFailed,
    /// The credential provider's plugin answered something that is not a usable CredentialProviderResponse.
    ProviderInvalidResponse,
    /// The credential provider's plugin wrote more than 1 MiB on stdout and was killed.
    ProviderOutputTooLarge,
    /// No auth entry the credential provider returned covers the image it was asked about (within `spec.registries`).
    ProviderNoMatchingAuth,
    /// A token for the credential provider's ServiceAccount could not be requested, or the ServiceAccount lacks an annotation the provider requires.
    ServiceAccountTokenFailed,
    /// An older RegistryCredential claims the same Secret name in the namespace.
    NameConflict,
    /// A Secret of the copy's name exists and is not the operator's (`onConflict: Skip`).
    SecretConflict,
    /// The Secret of the copy's name is a RegistryCredential's source: never written.
    SecretIsSource,
    /// Another writer keeps removing the operator's entry from a ServiceAccount; re-adds back off.
    Contested,
    /// `onConflict: Adopt`, but the Secret cannot become a copy (its type, immutable, or another
    /// controller's); reported, not attempted.
    AdoptImpossible,
    /// Writing the copy failed.
    SecretWriteFailed,
    /// Deleting a copy failed.
    SecretDeleteFailed,
    /// Reading a ServiceAccount to patch it failed.
    ServiceAccountReadFailed,
    /// Patching a ServiceAccount's `imagePullSecrets` failed.
    ServiceAccountPatchFailed,
    /// A ServiceAccount changed under every guarded patch attempt.
    ServiceAccountPatchConflict,
    /// Deleting the RegistryCredential could not remove everything yet; retried, the finalizer stays.
    CleanupFailed,
    /// A cache the reconcile waits for cannot be listed (RBAC, say); retried with backoff.
    CachesNotListed,
    /// Event: deletion finished; copies and entries removed.
    Cleanup,
    /// Event on a Pod: evicted, stuck without the copy, for its controller to recreate.
    EvictedStuckPod,
    /// Event on a Pod: stuck without the copy, and no controller would recreate it.
    StuckWithoutPullSecret,
    /// Event on a Pod: stuck without the copy, but evicting it would not help (or not now); the
    /// message says why.
    NotEvicted,
    /// `PodInjection=True`: the cluster serves MutatingAdmissionPolicy, so new Pods get the copy.
    AdmissionPolicyServed,
    /// `PodInjection=False`: the cluster serves no MutatingAdmissionPolicy API (1.34 / 1.35 as they ship).
    AdmissionPolicyNotServed,
    /// `PodInjection=False`: the credential opted out (`injectIntoPods: false`).
    InjectionDisabled,
    /// `PodInjection=True`, but selected ServiceAccounts enforce mountable secrets: their Pods are
    /// refused while they do not list the copy.
    MountableSecretsEnforced,
    /// `Expiring=True`: the credential expires within the warning window (`--expiry-warning`).
    ExpiresSoon,
    /// `Expiring=False`: the credential's expiry is known and further away than the window.
    ExpiryAhead,
}

/// What kind of trouble a reason is: the label of metrics and the rule for Events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Category {
    /// Nothing is wrong.
    Healthy,
    /// How the credential reaches Pods; not a failure.
    Info,
    /// The source Secret cannot be used; existing copies stay as they are.
    Source,
    /// Another owner holds the name; a person has to decide.
    Conflict,
    /// The API server refused or failed a write; retried with backoff.
    Api,
}

impl Reason {
    pub(crate) const ALL: [Reason; 37] = [
        Reason::Synced,
        Reason::Progressing,
        Reason::SyncFailed,
        Reason::SourceNotTrusted,
        Reason::SourceNotFound,
        Reason::SourceInvalid,
        Reason::Expired,
        Reason::ProviderNotConfigured,
        Reason::ProviderNotFound,
        Reason::ProviderTimedOut,
        Reason::ProviderFailed,
        Reason::ProviderInvalidResponse,
        Reason::ProviderOutputTooLarge,
        Reason::ProviderNoMatchingAuth,
        Reason::ServiceAccountTokenFailed,
        Reason::NameConflict,
        Reason::SecretConflict,
        Reason::SecretIsSource,
        Reason::Contested,
        Reason::AdoptImpossible,
        Reason::SecretWriteFailed,
        Reason::SecretDeleteFailed,
        Reason::ServiceAccountReadFailed,
        Reason::ServiceAccountPatchFailed,
        Reason::ServiceAccountPatchConflict,
        Reason::CleanupFailed,
        Reason::CachesNotListed,
        Reason::Cleanup,
        Reason::EvictedStuckPod,
        Reason::StuckWithoutPullSecret,
        Reason::NotEvicted,
        Reason::AdmissionPolicyServed,
        Reason::AdmissionPolicyNotServed,
        Reason::InjectionDisabled,
        Reason::MountableSecretsEnforced,
        Reason::ExpiresSoon,
        Reason::ExpiryAhead,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Synced => "Synced",
            Reason::Progressing => "Progressing",
            Reason::SyncFailed => "SyncFailed",
            Reason::SourceNotTrusted => "SourceNotTrusted",
            Reason::SourceNotFound => "SourceNotFound",
            Reason::SourceInvalid => "SourceInvalid",
            Reason::Expired => "Expired",
            Reason::ProviderNotConfigured => "ProviderNotConfigured",
            Reason::ProviderNotFound => "ProviderNotFound",
            Reason::ProviderTimedOut => "ProviderTimedOut",
            Reason::ProviderFailed => "ProviderFailed",
            Reason::ProviderInvalidResponse => "ProviderInvalidResponse",
            Reason::ProviderOutputTooLarge => "ProviderOutputTooLarge",
            Reason::ProviderNoMatchingAuth => "ProviderNoMatchingAuth",
            Reason::ServiceAccountTokenFailed => "ServiceAccountTokenFailed",
            Reason::ExpiresSoon => "ExpiresSoon",
            Reason::ExpiryAhead => "ExpiryAhead",
            Reason::NameConflict => "NameConflict",
            Reason::SecretConflict => "SecretConflict",
            Reason::SecretIsSource => "SecretIsSource",
            Reason::Contested => "Contested",
            Reason::AdoptImpossible => "AdoptImpossible",
            Reason::CleanupFailed => "CleanupFailed",
            Reason::Cleanup => "Cleanup",
            Reason::EvictedStuckPod => "EvictedStuckPod",
            Reason::StuckWithoutPullSecret => "StuckWithoutPullSecret",
            Reason::NotEvicted => "NotEvicted",
            Reason::SecretWriteFailed => "SecretWriteFailed",
            Reason::SecretDeleteFailed => "SecretDeleteFailed",
            Reason::ServiceAccountReadFailed => "ServiceAccountReadFailed",
            Reason::ServiceAccountPatchFailed => "ServiceAccountPatchFailed",
            Reason::ServiceAccountPatchConflict => "ServiceAccountPatchConflict",
            Reason::AdmissionPolicyServed => "AdmissionPolicyServed",
            Reason::AdmissionPolicyNotServed => "AdmissionPolicyNotServed",
            Reason::InjectionDisabled => "InjectionDisabled",
            Reason::MountableSecretsEnforced => "MountableSecretsEnforced",
            Reason::CachesNotListed => "CachesNotListed",
        }
    }

    pub(crate) fn category(self) -> Category {
        match self {
            Reason::Synced | Reason::Progressing | Reason::Cleanup => Category::Healthy,
            Reason::EvictedStuckPod | Reason::NotEvicted => Category::Info,
            Reason::StuckWithoutPullSecret => Category::Conflict,
            Reason::AdmissionPolicyServed
            | Reason::AdmissionPolicyNotServed
            | Reason::InjectionDisabled
            | Reason::MountableSecretsEnforced
            | Reason::ExpiresSoon
            | Reason::ExpiryAhead => Category::Info,
            Reason::SourceNotTrusted
            | Reason::SourceNotFound
            | Reason::SourceInvalid
            | Reason::Expired
            | Reason::ProviderNotConfigured
            | Reason::ProviderNotFound
            | Reason::ProviderTimedOut
            | Reason::ProviderFailed
            | Reason::ProviderInvalidResponse
            | Reason::ProviderOutputTooLarge
            | Reason::ProviderNoMatchingAuth
            | Reason::ServiceAccountTokenFailed => Category::Source,
            Reason::NameConflict
            | Reason::SecretConflict
            | Reason::SecretIsSource
            | Reason::Contested
            | Reason::AdoptImpossible => Category::Conflict,
            Reason::SyncFailed
            | Reason::SecretWriteFailed
            | Reason::SecretDeleteFailed
            | Reason::ServiceAccountReadFailed
            | Reason::ServiceAccountPatchFailed
            | Reason::ServiceAccountPatchConflict
            | Reason::CleanupFailed
            | Reason::CachesNotListed => Category::Api,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reason string this version does not know (written by another version of the operator).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UnknownReason;

impl FromStr for Reason {
    type Err = UnknownReason;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reason::ALL.into_iter().find(|reason| reason.as_str() == s).ok_or(UnknownReason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reasons table of docs/reference.md, as (reason, category) rows.
    fn documented_reasons() -> Vec<(String, String)> {
        let reference = include_str!("../docs/reference.md");
        let table = reference.split("| reason | category | meaning |").nth(1).expect("a reasons table");
        table
            .lines()
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                (cells[1].trim_matches('`').to_owned(), cells[2].to_owned())
            })
            .collect()
    }

    #[test]
    fn the_reference_documents_every_reason_with_its_category_and_no_other() {
        let category = |reason: Reason| match reason.category() {
            Category::Healthy => "healthy",
            Category::Info => "info",
            Category::Source => "source",
            Category::Conflict => "conflict",
            Category::Api => "api",
        };
        let expected: Vec<(String, String)> =
            Reason::ALL.iter().map(|r| (r.as_str().to_owned(), category(*r).to_owned())).collect();
        assert_eq!(documented_reasons(), expected, "docs/reference.md's reasons table, in Reason::ALL order");
    }

    #[test]
    fn every_reason_round_trips_through_its_stable_string() {
        for reason in Reason::ALL {
            assert_eq!(reason.as_str().parse(), Ok(reason));
            assert!(reason.as_str().chars().all(|c| c.is_ascii_alphanumeric()), "CamelCase: {reason}");
        }
        assert_eq!("Nope".parse::<Reason>(), Err(UnknownReason));
    }
}
