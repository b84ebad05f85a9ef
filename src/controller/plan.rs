//! What should exist where: a pure function of the cached cluster state, one namespace at a time.
//!
//! The reconciler feeds it the objects from its caches and carries out the returned [`Plan`];
//! nothing here talks to the API server, so every rule is unit-tested on its own.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::ResourceExt;
use kube::api::PartialObjectMeta;

use super::ownership::{
    AddedPullSecrets, CONTENT_DIGEST_ANNOTATION, CREDENTIAL_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};
use super::trim::content_digest;
use crate::crd::RegistryCredential;
use crate::crd::selection::{selects_namespace_reserving, selects_service_account};

/// The cached objects a plan is computed from.
pub(crate) struct ClusterState<'a> {
    /// Every RegistryCredential this instance manages, the one being planned among them.
    pub(crate) credentials: Vec<&'a RegistryCredential>,
    pub(crate) namespaces: Vec<&'a Namespace>,
    /// Secrets labelled as managed by this operator and controlled by a RegistryCredential.
    pub(crate) managed_secrets: Vec<&'a PartialObjectMeta<Secret>>,
    pub(crate) service_accounts: Vec<&'a ServiceAccount>,
    /// The namespaces sources are read from: like the system namespaces, selected only by an
    /// exact include entry, never by a glob.
    pub(crate) source_namespaces: &'a [String],
}

/// The changes one RegistryCredential needs, namespace by namespace.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Selected, non-terminating namespaces.
    pub(crate) matched: BTreeSet<String>,
    /// Namespaces with something to change.
    pub(crate) work: BTreeMap<String, NamespaceWork>,
    /// Selected namespaces where the copy must not be written, and why.
    pub(crate) blocked: BTreeMap<String, Blocked>,
}

/// Why a selected namespace gets no copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Blocked {
    /// An older RegistryCredential claims the same Secret name here.
    NameClaimedBy(String),
    /// A RegistryCredential reads its source from the Secret of that name here: never written.
    SourceSecret,
    /// The Secret of that name is controlled by a RegistryCredential this instance does not
    /// manage (another operator instance's, with another `--credential-selector`).
    ControlledByAnother(String),
}

/// A Secret the operator controls, by name and UID: deletes carry the UID as a precondition, so
/// a Secret that took the name meanwhile is never deleted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct CopyRef {
    pub(crate) name: String,
    pub(crate) uid: String,
}

/// The changes in one namespace.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct NamespaceWork {
    pub(crate) secret: Option<SecretChange>,
    /// Copies under a name this credential no longer uses (after a `secretName` change).
    pub(crate) delete_stale_secrets: Vec<CopyRef>,
    /// ServiceAccounts that need the pull secret entry.
    pub(crate) add_to: Vec<String>,
    /// ServiceAccount entries to remove: (ServiceAccount, entry), only entries the operator added.
    pub(crate) remove_from: Vec<(String, String)>,
}

impl NamespaceWork {
    fn is_empty(&self) -> bool {
        self.secret.is_none()
            && self.delete_stale_secrets.is_empty()
            && self.add_to.is_empty()
            && self.remove_from.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecretChange {
    /// No managed copy exists: create one (never overwriting an unmanaged Secret).
    Create,
    /// The managed copy is stale or belongs to a credential that lost the name: apply ours.
    Update,
    /// The namespace stopped matching (with `prune`), or the credential is being deleted.
    Delete(CopyRef),
}

/// The order in which credentials claim a secret name in a namespace: oldest first, then by name.
fn claim_key(credential: &RegistryCredential) -> (Option<&k8s_openapi::jiff::Timestamp>, String) {
    (credential.metadata.creation_timestamp.as_ref().map(|t| &t.0), credential.name_any())
}

fn is_terminating(namespace: &Namespace) -> bool {
    namespace.metadata.deletion_timestamp.is_some()
        || namespace.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
}

fn has_pull_secret(account: &ServiceAccount, name: &str) -> bool {
    account.image_pull_secrets.iter().flatten().any(|reference| reference.name == name)
}

/// The UID of the RegistryCredential that controls a cached copy.
fn controller_uid(secret: &PartialObjectMeta<Secret>) -> Option<&str> {
    secret.owner_references().iter().find(|o| o.controller == Some(true)).map(|o| o.uid.as_str())
}

fn copy_ref(secret: &PartialObjectMeta<Secret>) -> CopyRef {
    CopyRef { name: secret.name_any(), uid: secret.metadata.uid.clone().unwrap_or_default() }
}

/// What every namespace's plan shares: the credential, the cluster, and what is derived once.
struct Planner<'a> {
    credential: &'a RegistryCredential,
    state: &'a ClusterState<'a>,
    my_uid: &'a str,
    /// Live credentials with the same secret name that claim it before this one.
    rivals: Vec<&'a RegistryCredential>,
    /// (namespace, name) of every source Secret of the credentials this instance knows.
    sources: BTreeSet<(&'a str, &'a str)>,
    copies_by_namespace: HashMap<&'a str, Vec<&'a PartialObjectMeta<Secret>>>,
    accounts_by_namespace: HashMap<&'a str, Vec<&'a ServiceAccount>>,
}

impl<'a> Planner<'a> {
    fn new(credential: &'a RegistryCredential, state: &'a ClusterState<'a>) -> Self {
        let my_uid = credential.metadata.uid.as_deref().unwrap_or_default();
        let secret_name = credential.spec.secret_name.as_str();
        let rivals = state
            .credentials
            .iter()
            .copied()
            .filter(|other| {
                other.spec.secret_name == secret_name
                    && other.metadata.uid != credential.metadata.uid
                    && other.metadata.deletion_timestamp.is_none()
                    && claim_key(other) < claim_key(credential)
            })
            .collect();
        let sources = state
            .credentials
            .iter()
            .filter_map(|c| c.spec.source.secret_ref.as_ref())
            .map(|r| (r.namespace.as_str(), r.name.as_str()))
            .collect();
        // Per namespace: the copies of this credential, and any copy under its secret name.
        let mut copies_by_namespace: HashMap<&str, Vec<&PartialObjectMeta<Secret>>> = HashMap::new();
        for secret in &state.managed_secrets {
            if controller_uid(secret) == Some(my_uid) || secret.metadata.name.as_deref() == Some(secret_name) {
                copies_by_namespace
                    .entry(secret.metadata.namespace.as_deref().unwrap_or_default())
                    .or_default()
                    .push(secret);
            }
        }
        Planner {
            credential,
            state,
            my_uid,
            rivals,
            sources,
            copies_by_namespace,
            accounts_by_namespace: accounts_by_namespace(state),
        }
    }

    fn selects(&self, credential: &RegistryCredential, namespace: &Namespace) -> bool {
        selects_namespace_reserving(
            &credential.spec,
            namespace.metadata.name.as_deref().unwrap_or_default(),
            namespace.labels(),
            self.state.source_namespaces,
        )
    }

    fn accounts(&self, namespace: &str) -> &[&'a ServiceAccount] {
        self.accounts_by_namespace.get(namespace).map(Vec::as_slice).unwrap_or_default()
    }

    fn is_known_credential(&self, uid: &str) -> bool {
        self.state.credentials.iter().any(|c| c.metadata.uid.as_deref() == Some(uid))
    }

    /// Whether some live credential other than this one places `secret_name` on this ServiceAccount.
    fn wanted_by_another(&self, secret_name: &str, namespace: &Namespace, account: &str) -> bool {
        self.state.credentials.iter().any(|other| {
            other.metadata.uid != self.credential.metadata.uid
                && other.metadata.deletion_timestamp.is_none()
                && other.spec.secret_name == secret_name
                && self.selects(other, namespace)
                && selects_service_account(&other.spec, account)
        })
    }

    /// Entries for `secret_name` that the operator added and no other live credential still wants.
    fn removable_entries(&self, secret_name: &str, namespace: &Namespace) -> Vec<(String, String)> {
        let ns = namespace.metadata.name.as_deref().unwrap_or_default();
        self.accounts(ns)
            .iter()
            .filter(|account| AddedPullSecrets::of(account).contains(secret_name))
            .filter(|account| !self.wanted_by_another(secret_name, namespace, &account.name_any()))
            .map(|account| (account.name_any(), secret_name.to_owned()))
            .collect()
    }

    /// The plan for one namespace, given the digest of the payload the copies should hold.
    fn namespace(&self, namespace: &Namespace, payload_digest: &str) -> NamespacePlan {
        let spec = &self.credential.spec;
        let secret_name = spec.secret_name.as_str();
        let ns = namespace.metadata.name.as_deref().unwrap_or_default();
        let copies = self.copies_by_namespace.get(ns).map(Vec::as_slice).unwrap_or_default();
        let current = copies.iter().copied().find(|s| s.metadata.name.as_deref() == Some(secret_name));
        let mut work = NamespaceWork::default();

        if self.selects(self.credential, namespace) {
            if let Some(winner) = self.rivals.iter().find(|rival| self.selects(rival, namespace)) {
                return NamespacePlan::Blocked(Blocked::NameClaimedBy(winner.name_any()));
            }
            if self.sources.contains(&(ns, secret_name)) {
                return NamespacePlan::Blocked(Blocked::SourceSecret);
            }
            if let Some(secret) = current
                && let Some(owner) = controller_uid(secret)
                && owner != self.my_uid
                && !self.is_known_credential(owner)
            {
                let name = secret.owner_references().iter().find(|o| o.uid == owner).map(|o| o.name.clone());
                return NamespacePlan::Blocked(Blocked::ControlledByAnother(name.unwrap_or_default()));
            }
            work.secret = match current {
                None => Some(SecretChange::Create),
                Some(secret) if !self.copy_is_current(secret, payload_digest) => Some(SecretChange::Update),
                Some(_) => None,
            };
            for account in self.accounts(ns) {
                let name = account.name_any();
                if selects_service_account(spec, &name) {
                    if !has_pull_secret(account, secret_name) {
                        work.add_to.push(name);
                    }
                } else if spec.prune && AddedPullSecrets::of(account).contains(secret_name) {
                    work.remove_from.push((name, secret_name.to_owned()));
                }
            }
        } else if spec.prune
            && let Some(mine) = current.filter(|s| controller_uid(s) == Some(self.my_uid))
        {
            work.secret = Some(SecretChange::Delete(copy_ref(mine)));
            work.remove_from = self.removable_entries(secret_name, namespace);
        }

        // Copies under a name this credential no longer uses, and the entries that pointed at them.
        for secret in copies {
            let name = secret.name_any();
            if name != secret_name && controller_uid(secret) == Some(self.my_uid) {
                work.remove_from.extend(self.removable_entries(&name, namespace));
                work.delete_stale_secrets.push(copy_ref(secret));
            }
        }
        work.delete_stale_secrets.sort();
        NamespacePlan::Work(work)
    }

    /// Whether a copy already is exactly what this credential writes: the digest it wrote is the
    /// payload's, and no other field manager has written its data or type since.
    fn copy_is_current(&self, secret: &PartialObjectMeta<Secret>, payload_digest: &str) -> bool {
        secret.annotations().get(CONTENT_DIGEST_ANNOTATION).map(String::as_str) == Some(payload_digest)
            && controller_uid(secret) == Some(self.my_uid)
            && secret.managed_fields().is_empty()
            && secret.labels().get(CREDENTIAL_LABEL) == Some(&self.credential.name_any())
            && secret.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
    }
}

/// One selected or formerly selected namespace's outcome of planning.
enum NamespacePlan {
    Work(NamespaceWork),
    Blocked(Blocked),
}

/// The changes that bring the cluster to what `credential` asks for.
///
/// `payload` is the normalized docker config, or `None` when the source is unusable: then
/// nothing is planned, so a broken source never touches a working copy.
pub(crate) fn plan(credential: &RegistryCredential, state: &ClusterState, payload: Option<&str>) -> Plan {
    let planner = Planner::new(credential, state);
    let digest = payload.map(|payload| content_digest(payload.as_bytes()));
    let mut plan = Plan::default();
    for namespace in state.namespaces.iter().copied().filter(|n| !is_terminating(n)) {
        let ns = namespace.metadata.name.as_deref().unwrap_or_default();
        if planner.selects(credential, namespace) {
            plan.matched.insert(ns.to_owned());
        }
        let Some(digest) = &digest else { continue };
        match planner.namespace(namespace, digest) {
            NamespacePlan::Work(work) if work.is_empty() => {}
            NamespacePlan::Work(work) => {
                plan.work.insert(ns.to_owned(), work);
            }
            NamespacePlan::Blocked(blocked) => {
                plan.blocked.insert(ns.to_owned(), blocked);
            }
        }
    }
    plan
}

/// The cleanup when `credential` is deleted: its copies and the entries the operator added for them.
pub(crate) fn plan_cleanup(credential: &RegistryCredential, state: &ClusterState) -> BTreeMap<String, NamespaceWork> {
    let planner = Planner::new(credential, state);
    let namespaces: HashMap<&str, &Namespace> =
        state.namespaces.iter().map(|n| (n.metadata.name.as_deref().unwrap_or_default(), *n)).collect();
    let mut work: BTreeMap<String, NamespaceWork> = BTreeMap::new();
    for secret in state.managed_secrets.iter().filter(|s| controller_uid(s) == Some(planner.my_uid)) {
        let ns = secret.metadata.namespace.as_deref().unwrap_or_default();
        let Some(namespace) = namespaces.get(ns) else { continue };
        let entry = work.entry(ns.to_owned()).or_default();
        let name = secret.name_any();
        entry.remove_from.extend(planner.removable_entries(&name, namespace));
        if name == credential.spec.secret_name {
            entry.secret = Some(SecretChange::Delete(copy_ref(secret)));
        } else {
            entry.delete_stale_secrets.push(copy_ref(secret));
        }
    }
    // Entries whose copy someone already deleted still go, in the namespaces this credential selects.
    let secret_name = credential.spec.secret_name.as_str();
    for account in &state.service_accounts {
        let ns = account.metadata.namespace.as_deref().unwrap_or_default();
        let Some(namespace) = namespaces.get(ns) else { continue };
        if !AddedPullSecrets::of(account).contains(secret_name)
            || !planner.selects(credential, namespace)
            || planner.wanted_by_another(secret_name, namespace, &account.name_any())
        {
            continue;
        }
        let entry = (account.name_any(), secret_name.to_owned());
        let namespace_work = work.entry(ns.to_owned()).or_default();
        if !namespace_work.remove_from.contains(&entry) {
            namespace_work.remove_from.push(entry);
        }
    }
    work
}

fn accounts_by_namespace<'a>(state: &ClusterState<'a>) -> HashMap<&'a str, Vec<&'a ServiceAccount>> {
    let mut by_namespace: HashMap<&str, Vec<&ServiceAccount>> = HashMap::new();
    for account in &state.service_accounts {
        by_namespace.entry(account.metadata.namespace.as_deref().unwrap_or_default()).or_default().push(account);
    }
    by_namespace
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::LocalObjectReference;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
    use serde_json::json;

    use super::*;
    use crate::controller::ownership::ADDED_PULL_SECRETS_ANNOTATION;

    const PAYLOAD: &str = r#"{"auths":{"registry.test":{"auth":"dTpw","password":"p","username":"u"}}}"#;

    fn credential(name: &str, created: i64, spec: serde_json::Value) -> RegistryCredential {
        let mut full = json!({"source": {"secretRef": {"namespace": "regcred-system", "name": "src"}},
                              "namespaceSelector": {"matchLabels": {"team": "a"}}});
        full.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
        let mut credential: RegistryCredential = serde_json::from_value(json!({
            "apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential",
            "metadata": {"name": name, "uid": format!("uid-{name}")}, "spec": full,
        }))
        .unwrap();
        credential.metadata.creation_timestamp =
            Some(Time(k8s_openapi::jiff::Timestamp::from_second(created).unwrap()));
        credential
    }

    fn namespace(name: &str, team: &str) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(BTreeMap::from([("team".to_owned(), team.to_owned())])),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn account(namespace: &str, name: &str, entries: &[&str], record: Option<&str>) -> ServiceAccount {
        let mut account = ServiceAccount {
            metadata: ObjectMeta { name: Some(name.into()), namespace: Some(namespace.into()), ..Default::default() },
            image_pull_secrets: Some(entries.iter().map(|e| LocalObjectReference { name: e.to_string() }).collect()),
            ..Default::default()
        };
        if let Some(record) = record {
            account.metadata.annotations =
                Some(BTreeMap::from([(ADDED_PULL_SECRETS_ANNOTATION.to_owned(), record.to_owned())]));
        }
        account
    }

    /// A copy as the operator writes it for `owner`, holding `payload`, as the cache holds it.
    fn copy(namespace: &str, name: &str, owner: &RegistryCredential, payload: &str) -> PartialObjectMeta<Secret> {
        let mut secret = PartialObjectMeta::<Secret> {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{namespace}-{name}")),
                namespace: Some(namespace.into()),
                labels: Some(BTreeMap::from([
                    (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
                    (CREDENTIAL_LABEL.to_owned(), owner.name_any()),
                ])),
                owner_references: Some(vec![OwnerReference {
                    api_version: "regcred.dev/v1alpha1".into(),
                    kind: "RegistryCredential".into(),
                    uid: owner.metadata.uid.clone().unwrap(),
                    name: owner.name_any(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                annotations: Some(BTreeMap::from([(
                    CONTENT_DIGEST_ANNOTATION.to_owned(),
                    content_digest(payload.as_bytes()),
                )])),
                ..Default::default()
            },
            ..Default::default()
        };
        crate::controller::trim::managed_secret(&mut secret);
        secret
    }

    fn stale(name: &str, namespace: &str) -> CopyRef {
        CopyRef { name: name.into(), uid: format!("uid-{namespace}-{name}") }
    }

    fn state<'a>(
        credentials: &'a [RegistryCredential],
        namespaces: &'a [Namespace],
        secrets: &'a [PartialObjectMeta<Secret>],
        accounts: &'a [ServiceAccount],
    ) -> ClusterState<'a> {
        ClusterState {
            credentials: credentials.iter().collect(),
            namespaces: namespaces.iter().collect(),
            managed_secrets: secrets.iter().collect(),
            service_accounts: accounts.iter().collect(),
            source_namespaces: &[],
        }
    }

    #[test]
    fn a_selected_namespace_without_a_copy_gets_one_and_its_accounts_an_entry() {
        let rc = credential("rc", 1, json!({}));
        let credentials = [rc.clone()];
        let namespaces = [namespace("a1", "a"), namespace("b1", "b")];
        let accounts = [
            account("a1", "default", &["mine"], None),
            account("a1", "other", &[], None),
            account("b1", "default", &[], None),
        ];
        let plan = plan(&rc, &state(&credentials, &namespaces, &[], &accounts), Some(PAYLOAD));
        assert_eq!(plan.matched.iter().collect::<Vec<_>>(), vec!["a1"]);
        assert_eq!(
            plan.work.get("a1"),
            Some(&NamespaceWork {
                secret: Some(SecretChange::Create),
                add_to: vec!["default".into()],
                ..Default::default()
            })
        );
        assert_eq!(plan.work.len(), 1, "nothing for the unselected namespace");
    }

    #[test]
    fn converged_state_plans_nothing() {
        let rc = credential("rc", 1, json!({}));
        let credentials = [rc.clone()];
        let namespaces = [namespace("a1", "a")];
        let secrets = [copy("a1", "regcred", &rc, PAYLOAD)];
        let accounts = [account("a1", "default", &["regcred"], Some("regcred"))];
        let plan = plan(&rc, &state(&credentials, &namespaces, &secrets, &accounts), Some(PAYLOAD));
        assert!(plan.work.is_empty(), "{plan:?}");
        assert_eq!(plan.matched.len(), 1);
    }

    #[test]
    fn a_stale_or_edited_copy_is_updated() {
        let rc = credential("rc", 1, json!({}));
        let credentials = [rc.clone()];
        let namespaces = [namespace("a1", "a")];
        // Edited by hand: the digest still says current, but another field manager wrote the data.
        let mut edited = copy("a1", "regcred", &rc, PAYLOAD);
        edited.metadata.managed_fields =
            Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                manager: Some("kubectl-edit".into()),
                ..Default::default()
            }]);
        for secret in [copy("a1", "regcred", &rc, "{}"), edited] {
            let secrets = [secret];
            let plan = plan(&rc, &state(&credentials, &namespaces, &secrets, &[]), Some(PAYLOAD));
            assert_eq!(plan.work["a1"].secret, Some(SecretChange::Update));
        }
    }

    #[test]
    fn an_unusable_source_plans_no_change_at_all() {
        let rc = credential("rc", 1, json!({}));
        let credentials = [rc.clone()];
        let namespaces = [namespace("a1", "a"), namespace("b1", "b")];
        let secrets = [copy("b1", "regcred", &rc, PAYLOAD)];
        let plan = plan(&rc, &state(&credentials, &namespaces, &secrets, &[]), None);
        assert!(plan.work.is_empty(), "neither create nor prune: {plan:?}");
        assert_eq!(plan.matched.len(), 1);
    }

    #[test]
    fn a_namespace_that_stops_matching_is_pruned_of_the_operators_entries_only() {
        let rc = credential("rc", 1, json!({}));
        let credentials = [rc.clone()];
        let namespaces = [namespace("b1", "b")];
        let secrets = [copy("b1", "regcred", &rc, PAYLOAD)];
        let accounts = [
            account("b1", "default", &["mine", "regcred"], Some("regcred")),
            account("b1", "users", &["regcred"], None),
        ];
        let plan = plan(&rc, &state(&credentials, &namespaces, &secrets, &accounts), Some(PAYLOAD));
        assert_eq!(
            plan.work.get("b1"),
            Some(&NamespaceWork {
                secret: Some(SecretChange::Delete(stale("regcred", "b1"))),
                remove_from: vec![("default".into(), "regcred".into())],
                ..Default::default()
            })
        );
    }

    #[test]
    fn without_prune_a_namespace_that_stops_matching_keeps_its_copy() {
        let rc = credential("rc", 1, json!({"prune": false}));
        let credentials = [rc.clone()];
        let namespaces = [namespace("b1", "b")];
        let secrets = [copy("b1", "regcred", &rc, PAYLOAD)];
        let accounts = [account("b1", "default", &["regcred"], Some("regcred"))];
        assert!(plan(&rc, &state(&credentials, &namespaces, &secrets, &accounts), Some(PAYLOAD)).work.is_empty());
    }

    #[test]
    fn terminating_namespaces_are_neither_matched_nor_touched() {
        let rc = credential("rc", 1, json!({}));
        let credentials = [rc.clone()];
        let mut terminating = namespace("a1", "a");
        terminating.status = Some(k8s_openapi::api::core::v1::NamespaceStatus {
            phase: Some("Terminating".into()),
            ..Default::default()
        });
        let namespaces = [terminating];
        let plan = plan(&rc, &state(&credentials, &namespaces, &[], &[]), Some(PAYLOAD));
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn the_older_credential_wins_a_secret_name_and_the_name_breaks_ties() {
        let older = credential("zeta", 1, json!({}));
        let newer = credential("alpha", 2, json!({}));
        let tie = credential("beta", 1, json!({}));
        let credentials = [older.clone(), newer.clone(), tie.clone()];
        let namespaces = [namespace("a1", "a")];
        let cluster = state(&credentials, &namespaces, &[], &[]);
        assert!(plan(&newer, &cluster, Some(PAYLOAD)).blocked.contains_key("a1"));
        assert_eq!(plan(&tie, &cluster, Some(PAYLOAD)).blocked.get("a1"), None, "same second: beta < zeta");
        assert_eq!(
            plan(&older, &cluster, Some(PAYLOAD)).blocked.get("a1"),
            Some(&Blocked::NameClaimedBy("beta".into()))
        );
        assert!(plan(&newer, &cluster, Some(PAYLOAD)).work.is_empty(), "a loser writes nothing");
    }

    #[test]
    fn a_source_secret_is_never_planned_for_writing() {
        // Another credential reads its source from `a1/regcred`: the name is taken for good.
        let rc = credential("rc", 1, json!({}));
        let other = credential("other", 2, json!({"source": {"secretRef": {"namespace": "a1", "name": "regcred"}}}));
        let credentials = [rc.clone(), other];
        let namespaces = [namespace("a1", "a")];
        let plan = plan(&rc, &state(&credentials, &namespaces, &[], &[]), Some(PAYLOAD));
        assert_eq!(plan.blocked.get("a1"), Some(&Blocked::SourceSecret));
        assert!(plan.work.is_empty());
    }

    #[test]
    fn a_copy_controlled_by_a_credential_this_instance_does_not_know_is_left_alone() {
        let rc = credential("rc", 1, json!({}));
        let elsewhere = credential("elsewhere", 0, json!({}));
        let credentials = [rc.clone()];
        let namespaces = [namespace("a1", "a")];
        let secrets = [copy("a1", "regcred", &elsewhere, "{}")];
        let plan = plan(&rc, &state(&credentials, &namespaces, &secrets, &[]), Some(PAYLOAD));
        assert_eq!(plan.blocked.get("a1"), Some(&Blocked::ControlledByAnother("elsewhere".into())));
        assert!(plan.work.is_empty(), "neither overwritten nor deleted");
    }

    #[test]
    fn the_trusted_source_namespaces_are_not_selected_by_a_glob() {
        let rc = credential("rc", 1, json!({"namespaceSelector": null}));
        let credentials = [rc.clone()];
        let namespaces = [namespace("regcred-system", "a"), namespace("a1", "a")];
        let sources = ["regcred-system".to_owned()];
        let mut cluster = state(&credentials, &namespaces, &[], &[]);
        cluster.source_namespaces = &sources;
        let plan = plan(&rc, &cluster, Some(PAYLOAD));
        assert_eq!(plan.matched.iter().collect::<Vec<_>>(), vec!["a1"]);
    }

    #[test]
    fn the_winner_takes_over_a_copy_of_the_loser() {
        let winner = credential("a", 1, json!({}));
        let loser = credential("b", 2, json!({}));
        let credentials = [winner.clone(), loser.clone()];
        let namespaces = [namespace("a1", "a")];
        let secrets = [copy("a1", "regcred", &loser, PAYLOAD)];
        let plan = plan(&winner, &state(&credentials, &namespaces, &secrets, &[]), Some(PAYLOAD));
        assert_eq!(plan.work["a1"].secret, Some(SecretChange::Update));
    }

    #[test]
    fn a_renamed_secret_replaces_the_old_copy_and_entry() {
        let rc = credential("rc", 1, json!({"secretName": "pull"}));
        let credentials = [rc.clone()];
        let namespaces = [namespace("a1", "a")];
        let secrets = [copy("a1", "regcred", &rc, PAYLOAD)];
        let accounts = [account("a1", "default", &["regcred"], Some("regcred"))];
        let work = &plan(&rc, &state(&credentials, &namespaces, &secrets, &accounts), Some(PAYLOAD)).work["a1"];
        assert_eq!(work.secret, Some(SecretChange::Create));
        assert_eq!(work.delete_stale_secrets, vec![stale("regcred", "a1")]);
        assert_eq!(work.add_to, vec!["default"]);
        assert_eq!(work.remove_from, vec![("default".to_owned(), "regcred".to_owned())]);
    }

    #[test]
    fn an_account_leaving_the_selection_loses_the_recorded_entry() {
        let rc = credential("rc", 1, json!({"serviceAccounts": {"names": ["default"]}}));
        let credentials = [rc.clone()];
        let namespaces = [namespace("a1", "a")];
        let secrets = [copy("a1", "regcred", &rc, PAYLOAD)];
        let accounts = [
            account("a1", "default", &["regcred"], Some("regcred")),
            account("a1", "builder", &["regcred"], Some("regcred")),
        ];
        let work = &plan(&rc, &state(&credentials, &namespaces, &secrets, &accounts), Some(PAYLOAD)).work["a1"];
        assert_eq!(work.remove_from, vec![("builder".to_owned(), "regcred".to_owned())]);
    }

    #[test]
    fn cleanup_removes_copies_and_recorded_entries_another_credential_does_not_want() {
        let leaving = credential("leaving", 1, json!({}));
        let staying = credential("staying", 2, json!({"namespaceSelector": {"matchLabels": {"team": "b"}}}));
        let credentials = [leaving.clone(), staying.clone()];
        let namespaces = [namespace("a1", "a"), namespace("b1", "b")];
        let secrets = [copy("a1", "regcred", &leaving, PAYLOAD), copy("b1", "regcred", &leaving, PAYLOAD)];
        let accounts = [
            account("a1", "default", &["regcred"], Some("regcred")),
            account("b1", "default", &["regcred"], Some("regcred")),
        ];
        let work = plan_cleanup(&leaving, &state(&credentials, &namespaces, &secrets, &accounts));
        assert_eq!(work["a1"].secret, Some(SecretChange::Delete(stale("regcred", "a1"))));
        assert_eq!(work["a1"].remove_from, vec![("default".to_owned(), "regcred".to_owned())]);
        assert_eq!(work["b1"].secret, Some(SecretChange::Delete(stale("regcred", "b1"))));
        assert!(work["b1"].remove_from.is_empty(), "'staying' still wants that entry in b1");
    }

    #[test]
    fn cleanup_removes_recorded_entries_even_where_the_copy_is_already_gone() {
        let rc = credential("rc", 1, json!({}));
        let credentials = [rc.clone()];
        let namespaces = [namespace("a1", "a"), namespace("b1", "b")];
        let accounts = [
            account("a1", "default", &["mine", "regcred"], Some("regcred")),
            account("b1", "default", &["regcred"], Some("regcred")),
        ];
        let work = plan_cleanup(&rc, &state(&credentials, &namespaces, &[], &accounts));
        assert_eq!(work.len(), 1, "b1 is not selected: its entry belongs to whoever selects it: {work:?}");
        assert_eq!(
            work["a1"],
            NamespaceWork { remove_from: vec![("default".into(), "regcred".into())], ..Default::default() }
        );
    }
}
