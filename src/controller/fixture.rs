//! Builders of the objects the controller reads, for unit tests: each test states only what its
//! behaviour depends on (`credential("rc").created_at(1).finalized().build()`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LocalObjectReference, Namespace, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::PartialObjectMeta;
use serde_json::{Value, json};

use super::ownership::{
    ADDED_PULL_SECRETS_ANNOTATION, CONTENT_DIGEST_ANNOTATION, CREDENTIAL_LABEL, FINALIZER, MANAGED_BY_LABEL,
    MANAGED_BY_VALUE, content_digest,
};
use crate::crd::RegistryCredential;
use crate::crd::selection::{ENFORCE_MOUNTABLE_SECRETS_ANNOTATION, POD_INJECTION_DISABLED, POD_INJECTION_LABEL};

/// A RegistryCredential named `name` (UID `uid-<name>`) that reads `regcred-system/src`.
pub(crate) fn credential(name: &str) -> CredentialBuilder {
    CredentialBuilder {
        name: name.to_owned(),
        spec: json!({"source": {"secretRef": {"namespace": "regcred-system", "name": "src"}}}),
        generation: None,
        created: None,
        finalized: false,
        deleting: false,
    }
}

pub(crate) struct CredentialBuilder {
    name: String,
    spec: Value,
    generation: Option<i64>,
    created: Option<i64>,
    finalized: bool,
    deleting: bool,
}

impl CredentialBuilder {
    /// Sets these fields of the spec (`null` unsets one).
    pub(crate) fn spec(mut self, fields: Value) -> Self {
        let fields = fields.as_object().expect("spec fields as a JSON object").clone();
        self.spec.as_object_mut().unwrap().extend(fields);
        self
    }

    /// Selects the namespaces labelled `team: <team>`.
    pub(crate) fn selecting_team(self, team: &str) -> Self {
        self.spec(json!({"namespaceSelector": {"matchLabels": {"team": team}}}))
    }

    /// Created at this second (the older credential wins a contested name).
    pub(crate) fn created_at(mut self, second: i64) -> Self {
        self.created = Some(second);
        self
    }

    pub(crate) fn generation(mut self, generation: i64) -> Self {
        self.generation = Some(generation);
        self
    }

    /// With the operator's finalizer: active, so copies are written for it.
    pub(crate) fn finalized(mut self) -> Self {
        self.finalized = true;
        self
    }

    pub(crate) fn deleting(mut self) -> Self {
        self.deleting = true;
        self
    }

    pub(crate) fn build(self) -> RegistryCredential {
        let mut credential: RegistryCredential = serde_json::from_value(json!({
            "apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential",
            "metadata": {"name": self.name, "uid": format!("uid-{}", self.name)}, "spec": self.spec,
        }))
        .expect("a valid RegistryCredential");
        let at_second = |second| Time(Timestamp::from_second(second).unwrap());
        credential.metadata.generation = self.generation;
        credential.metadata.creation_timestamp = self.created.map(at_second);
        credential.metadata.finalizers = self.finalized.then(|| vec![FINALIZER.to_owned()]);
        credential.metadata.deletion_timestamp = self.deleting.then(|| Time(Timestamp::now()));
        credential
    }
}

/// A namespace labelled `team: <team>`.
pub(crate) fn namespace(name: &str, team: &str) -> Namespace {
    let labels = BTreeMap::from([("team".to_owned(), team.to_owned())]);
    Namespace {
        metadata: ObjectMeta { name: Some(name.into()), labels: Some(labels), ..Default::default() },
        ..Default::default()
    }
}

/// Being deleted: the API server sets the deletion timestamp (and then the Terminating phase).
pub(crate) fn terminating(mut namespace: Namespace) -> Namespace {
    namespace.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    namespace
}

/// A ServiceAccount listing `entries`, with the operator's `record` of those it added.
pub(crate) fn account(namespace: &str, name: &str, entries: &[&str], record: Option<&str>) -> ServiceAccount {
    let annotations = record.map(|r| BTreeMap::from([(ADDED_PULL_SECRETS_ANNOTATION.to_owned(), r.to_owned())]));
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            annotations,
            ..Default::default()
        },
        image_pull_secrets: Some(entries.iter().map(|e| LocalObjectReference { name: e.to_string() }).collect()),
        ..Default::default()
    }
}

/// The ServiceAccount with `kubernetes.io/enforce-mountable-secrets: "true"`.
pub(crate) fn enforcing(mut account: ServiceAccount) -> ServiceAccount {
    let annotations = account.metadata.annotations.get_or_insert_default();
    annotations.insert(ENFORCE_MOUNTABLE_SECRETS_ANNOTATION.to_owned(), "true".to_owned());
    account
}

/// The namespace, opted out of admission injection by its label.
pub(crate) fn injection_disabled(mut namespace: Namespace) -> Namespace {
    let labels = namespace.metadata.labels.get_or_insert_default();
    labels.insert(POD_INJECTION_LABEL.to_owned(), POD_INJECTION_DISABLED.to_owned());
    namespace
}

/// A copy as the operator writes it for `owner`, holding `payload`, as the cache of copies holds
/// it (metadata only), at version 1.
pub(crate) fn copy(
    namespace: &str,
    name: &str,
    owner: &RegistryCredential,
    payload: &str,
) -> PartialObjectMeta<Secret> {
    let labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
        (CREDENTIAL_LABEL.to_owned(), owner.name_any()),
    ]);
    let controller = OwnerReference {
        api_version: "regcred.dev/v1alpha1".into(),
        kind: "RegistryCredential".into(),
        uid: owner.metadata.uid.clone().unwrap(),
        name: owner.name_any(),
        controller: Some(true),
        ..Default::default()
    };
    let digest = BTreeMap::from([(CONTENT_DIGEST_ANNOTATION.to_owned(), content_digest(payload.as_bytes()))]);
    PartialObjectMeta::<Secret> {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("uid-{namespace}-{name}")),
            namespace: Some(namespace.into()),
            labels: Some(labels),
            owner_references: Some(vec![controller]),
            annotations: Some(digest),
            resource_version: Some("1".into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The copy after someone else wrote it (`kubectl edit`, say), labels and digest kept: a later
/// version than the operator wrote.
pub(crate) fn edited(mut copy: PartialObjectMeta<Secret>) -> PartialObjectMeta<Secret> {
    copy.metadata.resource_version = Some("2".into());
    copy
}
