//! Which namespaces and ServiceAccounts a RegistryCredential selects. Pure functions.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::crd::RegistryCredentialSpec;

/// Namespaces that a glob never selects: only an exact include entry does.
pub(crate) const SYSTEM_NAMESPACES: &[&str] = &["kube-system", "kube-public", "kube-node-lease"];

/// A namespace label that turns admission injection off in that namespace: the shipped policy
/// appends nothing to its Pods, whatever the credentials say. ServiceAccount patching goes on.
/// For namespaces whose ServiceAccounts enforce mountable secrets, where an appended name the
/// ServiceAccount does not list yet gets the Pod refused.
pub const POD_INJECTION_LABEL: &str = "regcred.dev/pod-injection";
/// The value of [`POD_INJECTION_LABEL`] that opts a namespace out.
pub const POD_INJECTION_DISABLED: &str = "disabled";

/// The ServiceAccount annotation (`"true"`) with which the API server refuses its Pods that list
/// a pull secret it does not list itself.
pub const ENFORCE_MOUNTABLE_SECRETS_ANNOTATION: &str = "kubernetes.io/enforce-mountable-secrets";

/// An object's labels, looked up by key: as the API gives them, or as a cache keeps them.
pub trait Labels {
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// Whether a namespace with these labels opted out of admission injection.
pub fn pod_injection_disabled(labels: &impl Labels) -> bool {
    labels.label(POD_INJECTION_LABEL) == Some(POD_INJECTION_DISABLED)
}

/// `*` matches any run of characters (also none), `?` exactly one: the kubelet's own wildcard
/// matching (Go's `path.Match`), which a namespace glob is a subset of (the CRD allows no other
/// special character in one).
pub(crate) fn glob_matches(pattern: &str, name: &str) -> bool {
    crate::credential::wildcard_matches(pattern, name)
}

/// The namespaces these credentials read their sources from. Where the operator's own
/// `--source-namespace` flags are out of sight (`doctor`, `lint`), these stand for the namespaces
/// it trusts for sources: like the system namespaces, selected only by an exact include entry.
pub(crate) fn source_namespaces<'a>(credentials: impl IntoIterator<Item = &'a RegistryCredentialSpec>) -> Vec<String> {
    let sources = credentials.into_iter().filter_map(|spec| spec.source.secret_ref.as_ref());
    let namespaces: std::collections::BTreeSet<&str> = sources.map(|source| source.namespace.as_str()).collect();
    namespaces.into_iter().map(str::to_owned).collect()
}

/// Whether the credential selects a namespace with this name and these labels.
#[cfg(test)]
pub(crate) fn selects_namespace(spec: &RegistryCredentialSpec, name: &str, labels: &impl Labels) -> bool {
    selects_namespace_reserving(spec, name, labels, &[])
}

/// [`selects_namespace`], where the `reserved` namespaces (the operator's trusted source
/// namespaces), like the system namespaces, are selected only by an exact include entry: a
/// default `include: ["*"]` must not put copies beside the sources.
pub(crate) fn selects_namespace_reserving(
    spec: &RegistryCredentialSpec,
    name: &str,
    labels: &impl Labels,
    reserved: &[String],
) -> bool {
    let filter = &spec.namespaces;
    let included = if SYSTEM_NAMESPACES.contains(&name) || reserved.iter().any(|r| r == name) {
        filter.include.iter().any(|pattern| pattern == name)
    } else {
        filter.include.iter().any(|pattern| glob_matches(pattern, name))
    };
    included
        && !filter.exclude.iter().any(|pattern| glob_matches(pattern, name))
        && spec.namespace_selector.as_ref().is_none_or(|selector| label_selector_matches(selector, labels))
}

impl RegistryCredentialSpec {
    /// Whether this credential gives its secret to Pods in `namespace` (with `labels`) running
    /// as `service_account`, when `reserved` are the operator's source namespaces. The one
    /// definition that the controller, `lint`, `doctor` and the admission policy's tests share.
    pub fn selects_pods_of(
        &self,
        namespace: &str,
        labels: &impl Labels,
        service_account: &str,
        reserved: &[String],
    ) -> bool {
        selects_namespace_reserving(self, namespace, labels, reserved) && selects_service_account(self, service_account)
    }
}

impl RegistryCredentialSpec {
    /// Whether the admission policy appends this credential's copy to Pods it selects in a
    /// namespace with these labels (given that the cluster runs the policy).
    pub fn injects_into(&self, labels: &impl Labels) -> bool {
        self.inject_into_pods && !pod_injection_disabled(labels)
    }
}

/// Whether the credential selects the ServiceAccount with this name.
pub(crate) fn selects_service_account(spec: &RegistryCredentialSpec, name: &str) -> bool {
    spec.service_accounts.names.iter().any(|selected| selected == "*" || selected == name)
}

/// Kubernetes LabelSelector semantics: all of matchLabels and matchExpressions must hold.
/// An unknown operator matches nothing, so a typo never selects every namespace.
pub(crate) fn label_selector_matches(selector: &LabelSelector, labels: &impl Labels) -> bool {
    let labels_match = selector
        .match_labels
        .as_ref()
        .is_none_or(|required| required.iter().all(|(key, value)| labels.label(key) == Some(value.as_str())));
    labels_match
        && selector.match_expressions.iter().flatten().all(|requirement| requirement_matches(requirement, labels))
}

fn requirement_matches(requirement: &LabelSelectorRequirement, labels: &impl Labels) -> bool {
    let value = labels.label(&requirement.key);
    let values = requirement.values.as_deref().unwrap_or_default();
    let listed = |value: &str| values.iter().any(|v| v == value);
    match requirement.operator.as_str() {
        "In" => value.is_some_and(listed),
        "NotIn" => value.is_none_or(|v| !listed(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{CredentialSource, NamespaceFilter, SecretReference, ServiceAccountSelector};

    fn spec(include: &[&str], exclude: &[&str], selector: Option<LabelSelector>) -> RegistryCredentialSpec {
        RegistryCredentialSpec {
            source: CredentialSource {
                secret_ref: Some(SecretReference { namespace: "regcred-system".into(), name: "s".into() }),
                credential_provider: None,
            },
            registries: Vec::new(),
            secret_name: "regcred".into(),
            namespace_selector: selector,
            namespaces: NamespaceFilter {
                include: include.iter().map(|s| s.to_string()).collect(),
                exclude: exclude.iter().map(|s| s.to_string()).collect(),
            },
            service_accounts: ServiceAccountSelector { names: vec!["default".into(), "builder".into()] },
            on_conflict: Default::default(),
            prune: true,
            inject_into_pods: true,
            evict_stuck_pods: false,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn globs() {
        for (pattern, name) in [
            ("*", "x"),
            ("*", ""),
            ("team-*", "team-a"),
            ("t?am", "team"),
            ("*-prod", "pay-prod"),
            ("a*b*c", "axxbyyc"),
        ] {
            assert!(glob_matches(pattern, name), "{pattern} {name}");
        }
        for (pattern, name) in
            [("team-*", "tea"), ("t?am", "tam"), ("*-prod", "prod"), ("a*b*c", "axxbyy"), ("abc", "abcd")]
        {
            assert!(!glob_matches(pattern, name), "{pattern} {name}");
        }
    }

    #[test]
    fn exclude_wins_over_include() {
        let spec = spec(&["team-*"], &["team-sandbox"], None);
        assert!(selects_namespace(&spec, "team-a", &labels(&[])));
        assert!(!selects_namespace(&spec, "team-sandbox", &labels(&[])));
        assert!(!selects_namespace(&spec, "other", &labels(&[])));
    }

    #[test]
    fn system_namespaces_need_an_exact_include() {
        let all = spec(&["*", "kube-*"], &[], None);
        for system in SYSTEM_NAMESPACES {
            assert!(!selects_namespace(&all, system, &labels(&[])), "{system}");
        }
        let explicit = spec(&["kube-system"], &[], None);
        assert!(selects_namespace(&explicit, "kube-system", &labels(&[])));
    }

    #[test]
    fn source_namespaces_need_an_exact_include() {
        let reserved = ["regcred-system".to_owned()];
        let all = spec(&["*", "regcred-*"], &[], None);
        assert!(!selects_namespace_reserving(&all, "regcred-system", &labels(&[]), &reserved));
        assert!(selects_namespace_reserving(&all, "regcred-other", &labels(&[]), &reserved));
        let explicit = spec(&["regcred-system"], &[], None);
        assert!(selects_namespace_reserving(&explicit, "regcred-system", &labels(&[]), &reserved));
    }

    #[test]
    fn label_selector_narrows_the_globs() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("team", "payments")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["sandbox".into()]),
            }]),
        };
        let spec = spec(&["*"], &[], Some(selector));
        assert!(selects_namespace(&spec, "a", &labels(&[("team", "payments")])));
        assert!(!selects_namespace(&spec, "a", &labels(&[("team", "payments"), ("tier", "sandbox")])));
        assert!(!selects_namespace(&spec, "a", &labels(&[("team", "search")])));
    }

    #[test]
    fn requirement_operators() {
        let present = labels(&[("k", "v")]);
        let req = |op: &str, values: &[&str]| LabelSelectorRequirement {
            key: "k".into(),
            operator: op.into(),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
        };
        assert!(requirement_matches(&req("In", &["v"]), &present));
        assert!(!requirement_matches(&req("In", &["w"]), &present));
        assert!(requirement_matches(&req("NotIn", &["w"]), &present));
        assert!(requirement_matches(&req("Exists", &[]), &present));
        assert!(!requirement_matches(&req("DoesNotExist", &[]), &present));
        assert!(requirement_matches(&req("DoesNotExist", &[]), &labels(&[])));
        assert!(!requirement_matches(&req("Typo", &[]), &present));
    }

    #[test]
    fn service_accounts_by_name_or_star() {
        let mut spec = spec(&["*"], &[], None);
        assert!(selects_service_account(&spec, "builder"));
        assert!(!selects_service_account(&spec, "other"));
        spec.service_accounts.names = vec!["*".into()];
        assert!(selects_service_account(&spec, "other"));
    }
}
