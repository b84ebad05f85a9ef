//! What should exist where: a pure function of the cached cluster state, one namespace at a time.
//!
//! The reconcilers feed it the objects from their caches and carry out what it returns; nothing
//! here talks to the API server, so every rule is unit-tested on its own. A namespace's plan
//! reads only that namespace's objects, so work on one namespace costs that namespace alone.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;

use super::cache::{Copy, NamespaceObjects};
use super::namespace_cache::NamespaceMeta;
use crate::crd::RegistryCredential;
use crate::crd::selection::{selects_namespace_reserving, selects_service_account};

/// What every namespace's plan reads beside the namespace's own objects.
pub(crate) struct ClusterState<'a> {
    /// Every RegistryCredential this instance manages, the one being planned among them.
    pub(crate) credentials: Vec<&'a RegistryCredential>,
    /// The namespaces sources are read from: like the system namespaces, selected only by an
    /// exact include entry, never by a glob.
    pub(crate) source_namespaces: &'a [String],
}

/// What a plan over every namespace says about one RegistryCredential.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Selected, non-terminating namespaces.
    pub(crate) matched: BTreeSet<String>,
    /// Namespaces with something to change.
    pub(crate) work: BTreeMap<String, NamespaceWork>,
    /// Selected namespaces where the copy must not be written, and why.
    pub(crate) blocked: BTreeMap<String, Blocked>,
    /// Selected ServiceAccounts that enforce mountable secrets where the admission policy
    /// appends the copy (`namespace/name`): their Pods are refused while they do not list it.
    pub(crate) enforcing_accounts: BTreeSet<String>,
}

/// Why a selected namespace gets no copy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Blocked {
    /// An older RegistryCredential claims the same Secret name here.
    NameClaimedBy(String),
    /// A RegistryCredential reads its source from the Secret of that name here: never written.
    SourceSecret,
    /// The Secret of that name is controlled by a RegistryCredential this instance does not
    /// manage (another operator instance's, with another `--credential-selector`).
    ControlledByAnother(String),
}

/// A Secret the operator controls, as the plan saw it: deletes carry its UID as a precondition,
/// so a Secret that took the name meanwhile is never deleted; writes carry its resourceVersion,
/// so a change since is read before anything is written over it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct CopyRef {
    pub(crate) name: String,
    pub(crate) uid: String,
    pub(crate) resource_version: String,
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
    /// Whether all it asks is to read the copy, which holds the payload as far as the cache
    /// tells: the namespace counts as synced meanwhile (after a restart, every copy is read once).
    pub(crate) fn only_checks(&self) -> bool {
        self.secret.as_ref().is_some_and(SecretChange::is_check)
            && self.delete_stale_secrets.is_empty()
            && self.add_to.is_empty()
            && self.remove_from.is_empty()
    }

    pub(crate) fn is_empty(&self) -> bool {
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
    /// The copy names another payload: write the wanted one over the version seen. A `repair`
    /// when that version is not one the operator wrote (else the source rotated).
    Rewrite { copy: CopyRef, repair: bool },
    /// The copy names the payload, but it is not a version the operator wrote (someone changed
    /// it, or it was written before this process started): read it, and repair it only if it
    /// differs from what is wanted.
    Verify(CopyRef),
    /// The copy belongs to a credential that lost the name, or lost its labels: take it over.
    TakeOver(CopyRef),
    /// The namespace stopped matching (with `prune`), or the credential is being deleted.
    Delete(CopyRef),
}

impl SecretChange {
    /// Whether the change may find nothing to write: a copy to be read before it is judged.
    pub(crate) fn is_check(&self) -> bool {
        matches!(self, SecretChange::Verify(_))
    }
}

/// One namespace's plan for one RegistryCredential.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NamespacePlan {
    /// Neither selected nor holding anything of this credential.
    Untouched,
    /// Selected (`matched`) or being pruned, with the changes it needs (maybe none).
    Work { matched: bool, work: NamespaceWork },
    /// Selected, but the copy must not be written here.
    Blocked(Blocked),
}

/// A namespace as the planner sees it: its labels and state, and its cached objects.
#[derive(Clone, Copy)]
pub(crate) struct NamespaceView<'a> {
    pub(crate) namespace: &'a NamespaceMeta,
    pub(crate) objects: &'a NamespaceObjects,
}

impl NamespaceView<'_> {
    fn name(&self) -> &str {
        &self.namespace.name
    }
}

/// The order in which credentials claim a secret name in a namespace: oldest first, then by name.
fn claim_key(credential: &RegistryCredential) -> (Option<&k8s_openapi::jiff::Timestamp>, String) {
    (credential.metadata.creation_timestamp.as_ref().map(|t| &t.0), credential.name_any())
}

fn copy_ref(copy: &Copy) -> CopyRef {
    CopyRef {
        name: copy.name.to_string(),
        uid: copy.uid.to_string(),
        resource_version: copy.resource_version.to_string(),
    }
}

/// What every namespace's plan shares: the credential, the cluster, and what is derived once.
pub(crate) struct Planner<'a> {
    credential: &'a RegistryCredential,
    state: &'a ClusterState<'a>,
    my_uid: &'a str,
    /// Credentials with the same secret name that claim it before this one; one being deleted
    /// keeps its claim until its cleanup has removed its copies.
    rivals: Vec<&'a RegistryCredential>,
    /// (namespace, name) of every source Secret of the credentials this instance knows.
    sources: BTreeSet<(&'a str, &'a str)>,
}

impl<'a> Planner<'a> {
    pub(crate) fn new(credential: &'a RegistryCredential, state: &'a ClusterState<'a>) -> Self {
        let my_uid = credential.metadata.uid.as_deref().unwrap_or_default();
        let rivals = state
            .credentials
            .iter()
            .copied()
            .filter(|other| {
                other.spec.secret_name == credential.spec.secret_name
                    && other.metadata.uid != credential.metadata.uid
                    && claim_key(other) < claim_key(credential)
            })
            .collect();
        let sources = state
            .credentials
            .iter()
            .filter_map(|c| c.spec.source.secret_ref.as_ref())
            .map(|r| (r.namespace.as_str(), r.name.as_str()))
            .collect();
        Planner { credential, state, my_uid, rivals, sources }
    }

    fn selects(&self, credential: &RegistryCredential, namespace: &NamespaceMeta) -> bool {
        selects_namespace_reserving(&credential.spec, &namespace.name, &namespace.labels, self.state.source_namespaces)
    }

    fn is_known_credential(&self, uid: &str) -> bool {
        self.state.credentials.iter().any(|c| c.metadata.uid.as_deref() == Some(uid))
    }

    /// Whether some live credential other than this one places `secret_name` on this ServiceAccount.
    fn wanted_by_another(&self, secret_name: &str, namespace: &NamespaceMeta, account: &str) -> bool {
        self.state.credentials.iter().any(|other| {
            other.metadata.uid != self.credential.metadata.uid
                && other.metadata.deletion_timestamp.is_none()
                && other.spec.secret_name == secret_name
                && self.selects(other, namespace)
                && selects_service_account(&other.spec, account)
        })
    }

    /// Entries for `secret_name` that the operator added and no other live credential still wants.
    fn removable_entries(&self, secret_name: &str, view: NamespaceView) -> Vec<(String, String)> {
        view.objects
            .accounts
            .iter()
            .filter(|account| account.may_record(secret_name))
            .filter(|account| !self.wanted_by_another(secret_name, view.namespace, &account.name))
            .map(|account| (account.name.to_string(), secret_name.to_owned()))
            .collect()
    }

    fn is_mine(&self, copy: &Copy) -> bool {
        &*copy.controller.uid == self.my_uid
    }

    /// The plan for one namespace, given the digest of the payload the copies should hold, or
    /// `None` when the source is unusable: then nothing is planned, so a broken source never
    /// touches a working copy.
    pub(crate) fn namespace(&self, view: NamespaceView, payload_digest: Option<&str>) -> NamespacePlan {
        if view.namespace.terminating {
            return NamespacePlan::Untouched;
        }
        let matched = self.selects(self.credential, view.namespace);
        let Some(payload_digest) = payload_digest else {
            return if matched {
                NamespacePlan::Work { matched, work: NamespaceWork::default() }
            } else {
                NamespacePlan::Untouched
            };
        };
        let spec = &self.credential.spec;
        let secret_name = spec.secret_name.as_str();
        let ns = view.name();
        let current = view.objects.copies.iter().find(|c| &*c.name == secret_name);
        let mut work = NamespaceWork::default();

        if matched {
            if let Some(winner) = self.rivals.iter().find(|rival| self.selects(rival, view.namespace)) {
                return NamespacePlan::Blocked(Blocked::NameClaimedBy(winner.name_any()));
            }
            if self.sources.contains(&(ns, secret_name)) {
                return NamespacePlan::Blocked(Blocked::SourceSecret);
            }
            if let Some(copy) = current
                && !self.is_mine(copy)
                && !self.is_known_credential(&copy.controller.uid)
            {
                return NamespacePlan::Blocked(Blocked::ControlledByAnother(copy.controller.name.to_string()));
            }
            work.secret = self.copy_change(current, payload_digest);
            for account in &view.objects.accounts {
                if selects_service_account(spec, &account.name) {
                    if !account.has_pull_secret(secret_name) {
                        work.add_to.push(account.name.to_string());
                    }
                } else if spec.prune && account.may_record(secret_name) {
                    work.remove_from.push((account.name.to_string(), secret_name.to_owned()));
                }
            }
        } else if spec.prune
            && let Some(mine) = current.filter(|c| self.is_mine(c))
        {
            work.secret = Some(SecretChange::Delete(copy_ref(mine)));
            work.remove_from = self.removable_entries(secret_name, view);
        }

        // Copies under a name this credential no longer uses, and the entries that pointed at them.
        for copy in &view.objects.copies {
            if &*copy.name != secret_name && self.is_mine(copy) {
                work.remove_from.extend(self.removable_entries(&copy.name, view));
                work.delete_stale_secrets.push(copy_ref(copy));
            }
        }
        work.delete_stale_secrets.sort();
        if !matched && work.is_empty() {
            return NamespacePlan::Untouched;
        }
        NamespacePlan::Work { matched, work }
    }

    /// The selected ServiceAccounts of a selected namespace that enforce mountable secrets, where
    /// the admission policy appends the copy to their Pods.
    pub(crate) fn enforcing_accounts<'v>(
        &self,
        view: NamespaceView<'v>,
    ) -> impl Iterator<Item = &'v str> + use<'v, '_> {
        let spec = &self.credential.spec;
        let injects = spec.injects_into(&view.namespace.labels);
        let accounts = view.objects.accounts.iter().filter(move |_| injects);
        accounts
            .filter(|account| account.enforces_mountable_secrets && selects_service_account(spec, &account.name))
            .map(|account| &*account.name)
    }

    /// What the copy of a selected namespace needs, where nothing blocks it.
    fn copy_change(&self, current: Option<&Copy>, payload_digest: &str) -> Option<SecretChange> {
        match current {
            None => Some(SecretChange::Create),
            Some(copy) if !self.is_mine(copy) || !self.labels_are_mine(copy) => {
                Some(SecretChange::TakeOver(copy_ref(copy)))
            }
            Some(copy) if copy.digest.as_deref() != Some(payload_digest) => {
                Some(SecretChange::Rewrite { copy: copy_ref(copy), repair: !copy.written_here })
            }
            Some(copy) if !copy.written_here => Some(SecretChange::Verify(copy_ref(copy))),
            Some(_) => None,
        }
    }

    /// Whether the copy carries this credential's labels (a tenant may have stripped them).
    fn labels_are_mine(&self, copy: &Copy) -> bool {
        copy.managed_by_label && copy.credential_label.as_deref() == Some(self.credential.name_any().as_str())
    }

    /// The cleanup of one namespace when the credential is deleted: its copies and the entries
    /// the operator added for them.
    pub(crate) fn cleanup(&self, view: NamespaceView) -> NamespaceWork {
        let secret_name = self.credential.spec.secret_name.as_str();
        let mut work = NamespaceWork::default();
        for copy in view.objects.copies.iter().filter(|c| self.is_mine(c)) {
            work.remove_from.extend(self.removable_entries(&copy.name, view));
            if &*copy.name == secret_name {
                work.secret = Some(SecretChange::Delete(copy_ref(copy)));
            } else {
                work.delete_stale_secrets.push(copy_ref(copy));
            }
        }
        // Entries whose copy someone already deleted still go, where this credential selects.
        if self.selects(self.credential, view.namespace) {
            for (account, entry) in self.removable_entries(secret_name, view) {
                if !work.remove_from.iter().any(|(a, e)| *a == account && *e == entry) {
                    work.remove_from.push((account, entry));
                }
            }
        }
        work
    }
}

/// The plan of `credential` over every namespace (for its status; writes go namespace by
/// namespace), given the digest of the payload, or `None` when the source is unusable.
pub(crate) fn plan<'a>(
    credential: &RegistryCredential,
    state: &ClusterState,
    namespaces: impl IntoIterator<Item = NamespaceView<'a>>,
    payload_digest: Option<&str>,
) -> Plan {
    let planner = Planner::new(credential, state);
    let mut plan = Plan::default();
    for view in namespaces {
        match planner.namespace(view, payload_digest) {
            NamespacePlan::Untouched => {}
            NamespacePlan::Work { matched, work } => {
                if matched {
                    plan.matched.insert(view.name().to_owned());
                }
                if !work.is_empty() {
                    plan.work.insert(view.name().to_owned(), work);
                }
            }
            NamespacePlan::Blocked(blocked) => {
                plan.matched.insert(view.name().to_owned());
                plan.blocked.insert(view.name().to_owned(), blocked);
            }
        }
        if plan.matched.contains(view.name()) {
            let accounts = planner.enforcing_accounts(view).map(|account| format!("{}/{account}", view.name()));
            plan.enforcing_accounts.extend(accounts);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use kube::api::PartialObjectMeta;
    use serde_json::json;

    use super::*;
    use crate::controller::cache::{Account, ObjectCache};
    use crate::controller::fixture::{
        account, copy, credential, edited, enforcing, injection_disabled, namespace, terminating,
    };
    use crate::controller::ownership::content_digest;
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};

    const PAYLOAD: &str = r#"{"auths":{"registry.test":{"auth":"dTpw","password":"p","username":"u"}}}"#;

    /// A credential selecting the namespaces of team `a`, created at `second`.
    fn team_a(name: &str, second: i64) -> RegistryCredential {
        credential(name).selecting_team("a").created_at(second).build()
    }

    /// A copy at the version the fixture writes.
    fn stale(name: &str, namespace: &str) -> CopyRef {
        CopyRef { name: name.into(), uid: format!("uid-{namespace}-{name}"), resource_version: "1".into() }
    }

    /// The cluster as the caches would hold it.
    #[derive(Default)]
    struct Cluster {
        credentials: Vec<RegistryCredential>,
        namespaces: Vec<NamespaceMeta>,
        objects: ObjectCache,
        source_namespaces: Vec<String>,
    }

    impl Cluster {
        fn of(credentials: &[&RegistryCredential]) -> Cluster {
            Cluster { credentials: credentials.iter().map(|c| (*c).clone()).collect(), ..Default::default() }
        }

        fn namespace(mut self, namespace: k8s_openapi::api::core::v1::Namespace) -> Self {
            self.namespaces.push(NamespaceMeta::from_metadata(&namespace.metadata));
            self
        }

        /// A copy the operator wrote, at this version.
        fn copy(self, copy: PartialObjectMeta<Secret>) -> Self {
            self.objects.remember_write(&copy.metadata, None);
            self
        }

        /// A copy as the watch reports it: a version the operator did not write in this process.
        fn seen(self, copy: PartialObjectMeta<Secret>) -> Self {
            self.objects.apply(&copy.namespace().unwrap(), &copy.name_any(), Copy::from_metadata(&copy.metadata));
            self
        }

        fn account(self, account: ServiceAccount) -> Self {
            self.objects.apply(
                &account.namespace().unwrap(),
                &account.name_any(),
                Some(Account::from_object(&account)),
            );
            self
        }

        /// With `namespace` trusted for sources.
        fn trusting(mut self, namespace: &str) -> Self {
            self.source_namespaces.push(namespace.to_owned());
            self
        }

        fn with_views<R>(&self, f: impl FnOnce(&ClusterState, Vec<NamespaceView>) -> R) -> R {
            let state = ClusterState {
                credentials: self.credentials.iter().collect(),
                source_namespaces: &self.source_namespaces,
            };
            let objects: Vec<NamespaceObjects> =
                self.namespaces.iter().map(|n| self.objects.namespace(&n.name)).collect();
            let views =
                self.namespaces.iter().zip(&objects).map(|(namespace, objects)| NamespaceView { namespace, objects });
            f(&state, views.collect())
        }

        fn plan(&self, credential: &RegistryCredential, payload: Option<&str>) -> Plan {
            let digest = payload.map(|p| content_digest(p.as_bytes()));
            self.with_views(|state, views| plan(credential, state, views, digest.as_deref()))
        }

        /// The cleanup of every namespace with work, as the cleanup plans them one by one.
        fn cleanup(&self, credential: &RegistryCredential) -> BTreeMap<String, NamespaceWork> {
            self.with_views(|state, views| {
                let planner = Planner::new(credential, state);
                let work = views.into_iter().map(|view| (view.name().to_owned(), planner.cleanup(view)));
                work.filter(|(_, work)| !work.is_empty()).collect()
            })
        }
    }

    #[test]
    fn a_selected_namespace_without_a_copy_gets_one_and_its_accounts_an_entry() {
        let rc = team_a("rc", 1);
        let plan = Cluster::of(&[&rc])
            .namespace(namespace("a1", "a"))
            .namespace(namespace("b1", "b"))
            .account(account("a1", "default", &["mine"], None))
            .account(account("a1", "other", &[], None))
            .account(account("b1", "default", &[], None))
            .plan(&rc, Some(PAYLOAD));
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
    fn selected_accounts_that_enforce_mountable_secrets_are_reported_where_pods_get_the_copy() {
        let rc = team_a("rc", 1);
        let cluster = Cluster::of(&[&rc])
            .namespace(namespace("a1", "a"))
            .namespace(injection_disabled(namespace("a2", "a")))
            .namespace(namespace("b1", "b"))
            .account(enforcing(account("a1", "default", &[], None)))
            .account(enforcing(account("a1", "other", &[], None)))
            .account(enforcing(account("a2", "default", &[], None)))
            .account(enforcing(account("b1", "default", &[], None)));
        let reported = |plan: Plan| plan.enforcing_accounts.into_iter().collect::<Vec<_>>();
        assert_eq!(reported(cluster.plan(&rc, Some(PAYLOAD))), vec!["a1/default"], "selected, and injected");
        assert_eq!(reported(cluster.plan(&rc, None)), vec!["a1/default"], "a broken source leaves the risk");
        let no_injection = credential("rc").selecting_team("a").spec(json!({"injectIntoPods": false})).build();
        assert!(reported(cluster.plan(&no_injection, Some(PAYLOAD))).is_empty(), "nothing appended: no refusal");
    }

    #[test]
    fn converged_state_plans_nothing() {
        let rc = team_a("rc", 1);
        let plan = Cluster::of(&[&rc])
            .namespace(namespace("a1", "a"))
            .copy(copy("a1", "regcred", &rc, PAYLOAD))
            .account(account("a1", "default", &["regcred"], Some("regcred")))
            .plan(&rc, Some(PAYLOAD));
        assert!(plan.work.is_empty(), "{plan:?}");
        assert_eq!(plan.matched.len(), 1);
    }

    #[test]
    fn a_copy_is_trusted_only_in_the_version_the_operator_wrote() {
        let rc = team_a("rc", 1);
        let cluster = || Cluster::of(&[&rc]).namespace(namespace("a1", "a"));
        let change = |cluster: Cluster| cluster.plan(&rc, Some(PAYLOAD)).work.remove("a1").and_then(|w| w.secret);
        let rotated = cluster().copy(copy("a1", "regcred", &rc, "{}"));
        assert_eq!(change(rotated), Some(SecretChange::Rewrite { copy: stale("regcred", "a1"), repair: false }));

        // Edited by anyone, under any field manager name, digest annotation kept: read and judged.
        let edited_keeping_the_digest = cluster().seen(edited(copy("a1", "regcred", &rc, PAYLOAD)));
        let version_2 = CopyRef { resource_version: "2".into(), ..stale("regcred", "a1") };
        assert_eq!(change(edited_keeping_the_digest), Some(SecretChange::Verify(version_2.clone())));
        let edited_digest = cluster().seen(edited(copy("a1", "regcred", &rc, "{}")));
        assert_eq!(change(edited_digest), Some(SecretChange::Rewrite { copy: version_2, repair: true }));

        // After a restart nothing is known to be the operator's: read once, counted as synced.
        let plan = cluster().seen(copy("a1", "regcred", &rc, PAYLOAD)).plan(&rc, Some(PAYLOAD));
        assert!(plan.work["a1"].only_checks(), "{plan:?}");
    }

    #[test]
    fn an_unusable_source_plans_no_change_at_all() {
        let rc = team_a("rc", 1);
        let plan = Cluster::of(&[&rc])
            .namespace(namespace("a1", "a"))
            .namespace(namespace("b1", "b"))
            .copy(copy("b1", "regcred", &rc, PAYLOAD))
            .plan(&rc, None);
        assert!(plan.work.is_empty(), "neither create nor prune: {plan:?}");
        assert_eq!(plan.matched.len(), 1);
    }

    #[test]
    fn a_namespace_that_stops_matching_is_pruned_of_the_operators_entries_only() {
        let rc = team_a("rc", 1);
        let plan = Cluster::of(&[&rc])
            .namespace(namespace("b1", "b"))
            .copy(copy("b1", "regcred", &rc, PAYLOAD))
            .account(account("b1", "default", &["mine", "regcred"], Some("regcred")))
            .account(account("b1", "users", &["regcred"], None))
            .plan(&rc, Some(PAYLOAD));
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
        let rc = credential("rc").selecting_team("a").created_at(1).spec(json!({"prune": false})).build();
        let cluster = Cluster::of(&[&rc])
            .namespace(namespace("b1", "b"))
            .copy(copy("b1", "regcred", &rc, PAYLOAD))
            .account(account("b1", "default", &["regcred"], Some("regcred")));
        assert!(cluster.plan(&rc, Some(PAYLOAD)).work.is_empty());
    }

    #[test]
    fn terminating_namespaces_are_neither_matched_nor_touched() {
        let rc = team_a("rc", 1);
        let plan = Cluster::of(&[&rc]).namespace(terminating(namespace("a1", "a"))).plan(&rc, Some(PAYLOAD));
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn the_older_credential_wins_a_secret_name_and_the_name_breaks_ties() {
        let older = team_a("zeta", 1);
        let newer = team_a("alpha", 2);
        let tie = team_a("beta", 1);
        let cluster = Cluster::of(&[&older, &newer, &tie]).namespace(namespace("a1", "a"));
        assert!(cluster.plan(&newer, Some(PAYLOAD)).blocked.contains_key("a1"));
        assert_eq!(cluster.plan(&tie, Some(PAYLOAD)).blocked.get("a1"), None, "same second: beta < zeta");
        assert_eq!(cluster.plan(&older, Some(PAYLOAD)).blocked.get("a1"), Some(&Blocked::NameClaimedBy("beta".into())));
        assert!(cluster.plan(&newer, Some(PAYLOAD)).work.is_empty(), "a loser writes nothing");
    }

    #[test]
    fn a_source_secret_is_never_planned_for_writing() {
        // Another credential reads its source from `a1/regcred`: the name is taken for good.
        let rc = team_a("rc", 1);
        let other = credential("other")
            .selecting_team("a")
            .created_at(2)
            .spec(json!({"source": {"secretRef": {"namespace": "a1", "name": "regcred"}}}))
            .build();
        let plan = Cluster::of(&[&rc, &other]).namespace(namespace("a1", "a")).plan(&rc, Some(PAYLOAD));
        assert_eq!(plan.blocked.get("a1"), Some(&Blocked::SourceSecret));
        assert!(plan.work.is_empty());
    }

    #[test]
    fn a_copy_controlled_by_a_credential_this_instance_does_not_know_is_left_alone() {
        let rc = team_a("rc", 1);
        let elsewhere = team_a("elsewhere", 0);
        let plan = Cluster::of(&[&rc])
            .namespace(namespace("a1", "a"))
            .copy(copy("a1", "regcred", &elsewhere, "{}"))
            .plan(&rc, Some(PAYLOAD));
        assert_eq!(plan.blocked.get("a1"), Some(&Blocked::ControlledByAnother("elsewhere".into())));
        assert!(plan.work.is_empty(), "neither overwritten nor deleted");
    }

    #[test]
    fn the_trusted_source_namespaces_are_not_selected_by_a_glob() {
        let rc = credential("rc").created_at(1).build();
        let plan = Cluster::of(&[&rc])
            .namespace(namespace("regcred-system", "a"))
            .namespace(namespace("a1", "a"))
            .trusting("regcred-system")
            .plan(&rc, Some(PAYLOAD));
        assert_eq!(plan.matched.iter().collect::<Vec<_>>(), vec!["a1"]);
    }

    #[test]
    fn the_winner_takes_over_a_copy_of_the_loser() {
        let winner = team_a("a", 1);
        let loser = team_a("b", 2);
        let plan = Cluster::of(&[&winner, &loser])
            .namespace(namespace("a1", "a"))
            .copy(copy("a1", "regcred", &loser, PAYLOAD))
            .plan(&winner, Some(PAYLOAD));
        assert_eq!(plan.work["a1"].secret, Some(SecretChange::TakeOver(stale("regcred", "a1"))));
    }

    #[test]
    fn a_renamed_secret_replaces_the_old_copy_and_entry() {
        let rc = credential("rc").selecting_team("a").created_at(1).spec(json!({"secretName": "pull"})).build();
        let plan = Cluster::of(&[&rc])
            .namespace(namespace("a1", "a"))
            .copy(copy("a1", "regcred", &rc, PAYLOAD))
            .account(account("a1", "default", &["regcred"], Some("regcred")))
            .plan(&rc, Some(PAYLOAD));
        let work = &plan.work["a1"];
        assert_eq!(work.secret, Some(SecretChange::Create));
        assert_eq!(work.delete_stale_secrets, vec![stale("regcred", "a1")]);
        assert_eq!(work.add_to, vec!["default"]);
        assert_eq!(work.remove_from, vec![("default".to_owned(), "regcred".to_owned())]);
    }

    #[test]
    fn an_account_leaving_the_selection_loses_the_recorded_entry() {
        let rc = credential("rc")
            .selecting_team("a")
            .created_at(1)
            .spec(json!({"serviceAccounts": {"names": ["default"]}}))
            .build();
        let plan = Cluster::of(&[&rc])
            .namespace(namespace("a1", "a"))
            .copy(copy("a1", "regcred", &rc, PAYLOAD))
            .account(account("a1", "default", &["regcred"], Some("regcred")))
            .account(account("a1", "builder", &["regcred"], Some("regcred")))
            .plan(&rc, Some(PAYLOAD));
        assert_eq!(plan.work["a1"].remove_from, vec![("builder".to_owned(), "regcred".to_owned())]);
    }

    #[test]
    fn cleanup_removes_copies_and_recorded_entries_another_credential_does_not_want() {
        let leaving = team_a("leaving", 1);
        let staying = credential("staying").selecting_team("b").created_at(2).build();
        let work = Cluster::of(&[&leaving, &staying])
            .namespace(namespace("a1", "a"))
            .namespace(namespace("b1", "b"))
            .copy(copy("a1", "regcred", &leaving, PAYLOAD))
            .copy(copy("b1", "regcred", &leaving, PAYLOAD))
            .account(account("a1", "default", &["regcred"], Some("regcred")))
            .account(account("b1", "default", &["regcred"], Some("regcred")))
            .cleanup(&leaving);
        assert_eq!(work["a1"].secret, Some(SecretChange::Delete(stale("regcred", "a1"))));
        assert_eq!(work["a1"].remove_from, vec![("default".to_owned(), "regcred".to_owned())]);
        assert_eq!(work["b1"].secret, Some(SecretChange::Delete(stale("regcred", "b1"))));
        assert!(work["b1"].remove_from.is_empty(), "'staying' still wants that entry in b1");
    }

    #[test]
    fn cleanup_removes_recorded_entries_even_where_the_copy_is_already_gone() {
        let rc = team_a("rc", 1);
        let work = Cluster::of(&[&rc])
            .namespace(namespace("a1", "a"))
            .namespace(namespace("b1", "b"))
            .account(account("a1", "default", &["mine", "regcred"], Some("regcred")))
            .account(account("b1", "default", &["regcred"], Some("regcred")))
            .cleanup(&rc);
        assert_eq!(work.len(), 1, "b1 is not selected: its entry belongs to whoever selects it: {work:?}");
        assert_eq!(
            work["a1"],
            NamespaceWork { remove_from: vec![("default".into(), "regcred".into())], ..Default::default() }
        );
    }
}
