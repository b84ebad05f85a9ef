//! What should exist where: a pure function of the cached cluster state.
//!
//! The reconciler feeds it the objects from its caches and carries out the returned [`Plan`];
//! nothing here talks to the API server, so every rule is unit-tested on its own.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::ResourceExt;

use super::ownership::{AddedPullSecrets, CREDENTIAL_LABEL};
use crate::crd::RegistryCredential;
use crate::crd::selection::{selects_namespace, selects_service_account};
use crate::credential::pull_secret::{DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE};

/// The cached objects a plan is computed from.
pub(crate) struct ClusterState<'a> {
    /// Every RegistryCredential this instance manages, the one being planned among them.
    pub(crate) credentials: Vec<&'a RegistryCredential>,
    pub(crate) namespaces: Vec<&'a Namespace>,
    /// Secrets labelled as managed by this operator.
    pub(crate) managed_secrets: Vec<&'a Secret>,
    pub(crate) service_accounts: Vec<&'a ServiceAccount>,
}

/// The changes one RegistryCredential needs, namespace by namespace.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Selected, non-terminating namespaces.
    pub(crate) matched: BTreeSet<String>,
    /// Namespaces with something to change.
    pub(crate) work: BTreeMap<String, NamespaceWork>,
    /// Selected namespaces where another RegistryCredential owns the secret name.
    pub(crate) name_conflicts: BTreeMap<String, String>,
}

/// The changes in one namespace.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct NamespaceWork {
    pub(crate) secret: Option<SecretChange>,
    /// Secrets with a name this credential no longer uses (after a `secretName` change).
    pub(crate) delete_stale_secrets: Vec<String>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretChange {
    /// No managed copy exists: create one (never overwriting an unmanaged Secret).
    Create,
    /// The managed copy is stale or belongs to a credential that lost the name: apply ours.
    Update,
    /// The namespace stopped matching (with `prune`), or the credential is being deleted.
    Delete,
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

/// Whether some live credential other than `except` places `secret_name` on this ServiceAccount.
fn wanted_by_another(
    state: &ClusterState,
    except: &RegistryCredential,
    secret_name: &str,
    namespace: &Namespace,
    account: &str,
) -> bool {
    state.credentials.iter().any(|other| {
        other.metadata.uid != except.metadata.uid
            && other.metadata.deletion_timestamp.is_none()
            && other.spec.secret_name == secret_name
            && selects_namespace(&other.spec, &namespace.name_any(), namespace.labels())
            && selects_service_account(&other.spec, account)
    })
}

/// The changes that bring the cluster to what `credential` asks for.
///
/// `payload` is the normalized docker config, or `None` when the source is unusable: then
/// nothing is planned, so a broken source never touches a working copy.
pub(crate) fn plan(credential: &RegistryCredential, state: &ClusterState, payload: Option<&str>) -> Plan {
    let me = credential.name_any();
    let secret_name = credential.spec.secret_name.as_str();
    let spec = &credential.spec;
    // Per namespace: the copies of this credential, and any managed copy under its secret name
    // (another credential's, which the winner of the name takes over).
    let mut copies_by_namespace: HashMap<&str, Vec<&Secret>> = HashMap::new();
    for secret in &state.managed_secrets {
        if secret.labels().get(CREDENTIAL_LABEL) == Some(&me) || secret.name_any() == secret_name {
            copies_by_namespace
                .entry(secret.metadata.namespace.as_deref().unwrap_or_default())
                .or_default()
                .push(secret);
        }
    }
    let mut accounts_by_namespace: HashMap<&str, Vec<&ServiceAccount>> = HashMap::new();
    for account in &state.service_accounts {
        accounts_by_namespace
            .entry(account.metadata.namespace.as_deref().unwrap_or_default())
            .or_default()
            .push(account);
    }
    let rivals: Vec<&&RegistryCredential> = state
        .credentials
        .iter()
        .filter(|other| {
            other.spec.secret_name == secret_name
                && other.metadata.uid != credential.metadata.uid
                && other.metadata.deletion_timestamp.is_none()
                && claim_key(other) < claim_key(credential)
        })
        .collect();

    let mut plan = Plan::default();
    for namespace in &state.namespaces {
        if is_terminating(namespace) {
            continue;
        }
        let ns = namespace.metadata.name.as_deref().unwrap_or_default();
        let selected = selects_namespace(spec, ns, namespace.labels());
        if selected {
            plan.matched.insert(ns.to_owned());
        }
        let Some(payload) = payload else { continue };
        let accounts = accounts_by_namespace.get(ns).map(Vec::as_slice).unwrap_or_default();
        let copies = copies_by_namespace.get(ns).map(Vec::as_slice).unwrap_or_default();
        let current = copies.iter().copied().find(|s| s.metadata.name.as_deref() == Some(secret_name));
        let owned_by_me = current.is_some_and(|s| s.labels().get(CREDENTIAL_LABEL) == Some(&me));
        let mut work = NamespaceWork::default();

        if selected {
            if let Some(winner) = rivals.iter().find(|r| selects_namespace(&r.spec, ns, namespace.labels())) {
                plan.name_conflicts.insert(ns.to_owned(), winner.name_any());
                continue;
            }
            work.secret = match current {
                None => Some(SecretChange::Create),
                Some(secret) if !copy_is_current(secret, credential, payload) => Some(SecretChange::Update),
                Some(_) => None,
            };
            for account in accounts {
                let name = account.name_any();
                if selects_service_account(spec, &name) {
                    if !has_pull_secret(account, secret_name) {
                        work.add_to.push(name);
                    }
                } else if spec.prune && AddedPullSecrets::of(account).contains(secret_name) {
                    work.remove_from.push((name, secret_name.to_owned()));
                }
            }
        } else if spec.prune && owned_by_me {
            work.secret = Some(SecretChange::Delete);
            work.remove_from = removable_entries(state, credential, secret_name, namespace, accounts);
        }

        // Copies under a name this credential no longer uses, and the entries that pointed at them.
        for secret in copies {
            let name = secret.name_any();
            if name != secret_name && secret.labels().get(CREDENTIAL_LABEL) == Some(&me) {
                work.remove_from.extend(removable_entries(state, credential, &name, namespace, accounts));
                work.delete_stale_secrets.push(name);
            }
        }
        work.delete_stale_secrets.sort();
        if !work.is_empty() {
            plan.work.insert(ns.to_owned(), work);
        }
    }
    plan
}

/// The cleanup when `credential` is deleted: its copies and the entries the operator added for them.
pub(crate) fn plan_cleanup(credential: &RegistryCredential, state: &ClusterState) -> BTreeMap<String, NamespaceWork> {
    let me = credential.name_any();
    let namespaces: HashMap<&str, &Namespace> =
        state.namespaces.iter().map(|n| (n.metadata.name.as_deref().unwrap_or_default(), *n)).collect();
    let accounts = accounts_by_namespace(state);
    let mut work: BTreeMap<String, NamespaceWork> = BTreeMap::new();
    for secret in state.managed_secrets.iter().filter(|s| s.labels().get(CREDENTIAL_LABEL) == Some(&me)) {
        let ns = secret.metadata.namespace.as_deref().unwrap_or_default();
        let Some(namespace) = namespaces.get(ns) else { continue };
        let in_namespace = accounts.get(ns).map(Vec::as_slice).unwrap_or_default();
        let entry = work.entry(ns.to_owned()).or_default();
        let name = secret.name_any();
        entry.remove_from.extend(removable_entries(state, credential, &name, namespace, in_namespace));
        if name == credential.spec.secret_name {
            entry.secret = Some(SecretChange::Delete);
        } else {
            entry.delete_stale_secrets.push(name);
        }
    }
    // Entries whose copy someone already deleted still go, in the namespaces this credential selects.
    let secret_name = credential.spec.secret_name.as_str();
    for account in &state.service_accounts {
        let ns = account.metadata.namespace.as_deref().unwrap_or_default();
        let Some(namespace) = namespaces.get(ns) else { continue };
        let recorded = AddedPullSecrets::of(account).contains(secret_name);
        if !recorded
            || !selects_namespace(&credential.spec, ns, namespace.labels())
            || wanted_by_another(state, credential, secret_name, namespace, &account.name_any())
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

/// Entries for `secret_name` that the operator added and no other live credential still wants.
fn removable_entries(
    state: &ClusterState,
    credential: &RegistryCredential,
    secret_name: &str,
    namespace: &Namespace,
    accounts: &[&ServiceAccount],
) -> Vec<(String, String)> {
    accounts
        .iter()
        .filter(|account| AddedPullSecrets::of(account).contains(secret_name))
        .filter(|account| !wanted_by_another(state, credential, secret_name, namespace, &account.name_any()))
        .map(|account| (account.name_any(), secret_name.to_owned()))
        .collect()
}

/// Whether a managed copy already is exactly what `credential` would write.
fn copy_is_current(secret: &Secret, credential: &RegistryCredential, payload: &str) -> bool {
    let data_current =
        secret.data.as_ref().and_then(|d| d.get(DOCKER_CONFIG_JSON_KEY)).is_some_and(|v| v.0 == payload.as_bytes());
    let owner_current = secret.owner_references().iter().any(|o| Some(&o.uid) == credential.metadata.uid.as_ref());
    data_current
        && owner_current
        && secret.type_.as_deref() == Some(DOCKER_CONFIG_JSON_TYPE)
        && secret.labels().get(CREDENTIAL_LABEL) == Some(&credential.name_any())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::LocalObjectReference;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
    use serde_json::json;

    use super::*;
    use crate::controller::ownership::{ADDED_PULL_SECRETS_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE};

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

    /// A copy as the operator writes it for `owner`, holding `payload`.
    fn copy(namespace: &str, name: &str, owner: &RegistryCredential, payload: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                labels: Some(BTreeMap::from([
                    (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
                    (CREDENTIAL_LABEL.to_owned(), owner.name_any()),
                ])),
                owner_references: Some(vec![OwnerReference {
                    uid: owner.metadata.uid.clone().unwrap(),
                    name: owner.name_any(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            type_: Some(DOCKER_CONFIG_JSON_TYPE.into()),
            data: Some(BTreeMap::from([(DOCKER_CONFIG_JSON_KEY.to_owned(), ByteString(payload.as_bytes().to_vec()))])),
            ..Default::default()
        }
    }

    fn state<'a>(
        credentials: &'a [RegistryCredential],
        namespaces: &'a [Namespace],
        secrets: &'a [Secret],
        accounts: &'a [ServiceAccount],
    ) -> ClusterState<'a> {
        ClusterState {
            credentials: credentials.iter().collect(),
            namespaces: namespaces.iter().collect(),
            managed_secrets: secrets.iter().collect(),
            service_accounts: accounts.iter().collect(),
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
        let mut retyped = copy("a1", "regcred", &rc, PAYLOAD);
        retyped.type_ = Some("Opaque".into());
        for secret in [copy("a1", "regcred", &rc, "{}"), retyped] {
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
                secret: Some(SecretChange::Delete),
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
        assert!(plan(&newer, &cluster, Some(PAYLOAD)).name_conflicts.contains_key("a1"));
        assert_eq!(plan(&tie, &cluster, Some(PAYLOAD)).name_conflicts.get("a1"), None, "same second: beta < zeta");
        assert_eq!(plan(&older, &cluster, Some(PAYLOAD)).name_conflicts.get("a1").map(String::as_str), Some("beta"));
        assert!(plan(&newer, &cluster, Some(PAYLOAD)).work.is_empty(), "a loser writes nothing");
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
        assert_eq!(work.delete_stale_secrets, vec!["regcred"]);
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
        assert_eq!(work["a1"].secret, Some(SecretChange::Delete));
        assert_eq!(work["a1"].remove_from, vec![("default".to_owned(), "regcred".to_owned())]);
        assert_eq!(work["b1"].secret, Some(SecretChange::Delete));
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
