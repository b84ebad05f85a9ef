//! What should exist where: a pure function of the cached cluster state.
//!
//! The reconciler feeds it the objects from its caches and carries out the returned [`Plan`];
//! nothing here talks to the API server, so every rule is unit-tested on its own.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::ResourceExt;

use super::labels::{CREDENTIAL_LABEL, DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, added_pull_secrets};
use super::selection::{selects_namespace, selects_service_account};
use crate::crd::RegistryCredential;

/// The cached objects a plan is computed from.
pub struct ClusterState<'a> {
    /// Every RegistryCredential this instance manages, the one being planned among them.
    pub credentials: Vec<&'a RegistryCredential>,
    pub namespaces: Vec<&'a Namespace>,
    /// Secrets labelled as managed by this operator.
    pub managed_secrets: Vec<&'a Secret>,
    pub service_accounts: Vec<&'a ServiceAccount>,
}

/// The changes one RegistryCredential needs, namespace by namespace.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Selected, non-terminating namespaces.
    pub matched: BTreeSet<String>,
    /// Namespaces with something to change.
    pub work: BTreeMap<String, NamespaceWork>,
    /// Selected namespaces where another RegistryCredential owns the secret name.
    pub name_conflicts: BTreeMap<String, String>,
}

/// The changes in one namespace.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NamespaceWork {
    pub secret: Option<SecretChange>,
    /// Secrets with a name this credential no longer uses (after a `secretName` change).
    pub delete_stale_secrets: Vec<String>,
    /// ServiceAccounts that need the pull secret entry.
    pub add_to: Vec<String>,
    /// ServiceAccount entries to remove: (ServiceAccount, entry), only entries the operator added.
    pub remove_from: Vec<(String, String)>,
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
pub enum SecretChange {
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
pub fn plan(credential: &RegistryCredential, state: &ClusterState, payload: Option<&str>) -> Plan {
    let me = credential.name_any();
    let secret_name = credential.spec.secret_name.as_str();
    let spec = &credential.spec;
    let my_secrets: HashMap<(&str, &str), &Secret> = state
        .managed_secrets
        .iter()
        .filter(|s| s.labels().get(CREDENTIAL_LABEL) == Some(&me) || s.name_any() == secret_name)
        .map(|s| {
            ((s.metadata.namespace.as_deref().unwrap_or_default(), s.metadata.name.as_deref().unwrap_or_default()), *s)
        })
        .collect();
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
        let current = my_secrets.get(&(ns, secret_name)).copied();
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
                } else if spec.prune && added_pull_secrets(account).contains(secret_name) {
                    work.remove_from.push((name, secret_name.to_owned()));
                }
            }
        } else if spec.prune && owned_by_me {
            work.secret = Some(SecretChange::Delete);
            work.remove_from = removable_entries(state, credential, secret_name, namespace, accounts);
        }

        // Copies under a name this credential no longer uses, and the entries that pointed at them.
        for ((secret_ns, name), secret) in &my_secrets {
            if *secret_ns == ns && *name != secret_name && secret.labels().get(CREDENTIAL_LABEL) == Some(&me) {
                work.delete_stale_secrets.push((*name).to_owned());
                work.remove_from.extend(removable_entries(state, credential, name, namespace, accounts));
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
pub fn plan_cleanup(credential: &RegistryCredential, state: &ClusterState) -> BTreeMap<String, NamespaceWork> {
    let me = credential.name_any();
    let mut work: BTreeMap<String, NamespaceWork> = BTreeMap::new();
    for secret in state.managed_secrets.iter().filter(|s| s.labels().get(CREDENTIAL_LABEL) == Some(&me)) {
        let ns = secret.metadata.namespace.clone().unwrap_or_default();
        let Some(namespace) = state.namespaces.iter().find(|n| n.metadata.name.as_deref() == Some(&ns)) else {
            continue;
        };
        let accounts: Vec<&ServiceAccount> =
            state.service_accounts.iter().copied().filter(|a| a.metadata.namespace.as_deref() == Some(&ns)).collect();
        let entry = work.entry(ns).or_default();
        let name = secret.name_any();
        entry.remove_from.extend(removable_entries(state, credential, &name, namespace, &accounts));
        if name == credential.spec.secret_name {
            entry.secret = Some(SecretChange::Delete);
        } else {
            entry.delete_stale_secrets.push(name);
        }
    }
    work
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
        .filter(|account| added_pull_secrets(account).contains(secret_name))
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

/// The annotation value after adding or removing `name` from the operator's record.
pub fn record_with(account: &ServiceAccount, name: &str, added: bool) -> String {
    let mut record: BTreeSet<String> = added_pull_secrets(account).into_iter().map(str::to_owned).collect();
    if added {
        record.insert(name.to_owned());
    } else {
        record.remove(name);
    }
    record.into_iter().collect::<Vec<_>>().join(",")
}
