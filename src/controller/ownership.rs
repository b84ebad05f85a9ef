//! How the operator marks what it owns: the labels on its copies, its field manager, its
//! finalizer, and the record of the `imagePullSecrets` entries it added to a ServiceAccount.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

/// The field manager of every write, so `managedFields` shows what is ours.
pub(crate) const FIELD_MANAGER: &str = "regcred-operator";
/// On every Secret the operator creates; the managed-Secret watch selects on it.
pub(crate) const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub(crate) const MANAGED_BY_VALUE: &str = "regcred-operator";
/// The RegistryCredential a copy belongs to.
pub(crate) const CREDENTIAL_LABEL: &str = "regcred.dev/credential";
/// On a ServiceAccount: the `imagePullSecrets` entries the operator added (comma-separated), so
/// cleanup removes exactly those and never an entry a person or another tool put there.
pub(crate) const ADDED_PULL_SECRETS_ANNOTATION: &str = "regcred.dev/added-pull-secrets";
/// On every copy: the SHA-256 of the payload the operator wrote, so that the cache of copies holds
/// metadata only and still tells a current copy from a stale one.
pub(crate) const CONTENT_DIGEST_ANNOTATION: &str = "regcred.dev/content-digest";
/// The digest of a copy's payload that the operator writes on the copy, to tell whether a copy is
/// current without reading it. A digest of a copy, on that copy, tells nothing its reader lacks.
pub(crate) fn content_digest(payload: &[u8]) -> String {
    Sha256::digest(payload).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Finalizer on RegistryCredentials: cleanup runs before the object goes away.
pub(crate) const FINALIZER: &str = "regcred.dev/cleanup";

/// Whether copies and entries are written for this credential: its finalizer is in place (so its
/// deletion cleans up what was written) and it is not being deleted (its cleanup owns that).
pub(crate) fn is_active(credential: &crate::crd::RegistryCredential) -> bool {
    credential.metadata.deletion_timestamp.is_none()
        && credential.metadata.finalizers.iter().flatten().any(|f| f == FINALIZER)
}

/// The label selector of the managed-Secret watch.
pub(crate) fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")
}

/// The `imagePullSecrets` entries the operator added to one ServiceAccount, as recorded in its
/// [`ADDED_PULL_SECRETS_ANNOTATION`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AddedPullSecrets(BTreeSet<String>);

impl<'a> FromIterator<&'a str> for AddedPullSecrets {
    fn from_iter<I: IntoIterator<Item = &'a str>>(names: I) -> Self {
        AddedPullSecrets(names.into_iter().map(str::to_owned).collect())
    }
}

impl AddedPullSecrets {
    pub(crate) fn parse(annotation: Option<&str>) -> Self {
        let names = annotation.unwrap_or_default().split(',').map(str::trim).filter(|name| !name.is_empty());
        AddedPullSecrets(names.map(str::to_owned).collect())
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }

    pub(crate) fn insert(&mut self, name: &str) {
        self.0.insert(name.to_owned());
    }

    pub(crate) fn remove(&mut self, name: &str) {
        self.0.remove(name);
    }

    /// The annotation value, `None` when nothing is recorded (the annotation then goes).
    pub(crate) fn annotation(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| self.0.iter().map(String::as_str).collect::<Vec<_>>().join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_reads_tolerantly_and_writes_sorted() {
        let mut record = AddedPullSecrets::parse(Some(" regcred, ,other"));
        assert!(record.contains("regcred") && record.contains("other"));
        record.insert("new");
        assert_eq!(record.annotation().as_deref(), Some("new,other,regcred"));
        record.remove("regcred");
        assert_eq!(record.annotation().as_deref(), Some("new,other"));
        assert_eq!(AddedPullSecrets::parse(None).annotation(), None);
    }
}
