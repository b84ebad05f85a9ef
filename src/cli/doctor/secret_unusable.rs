//! A pull secret of the Pod that exists but gives the kubelet nothing, or that could not be read.

use super::evidence::{Cause, Context, RANK_SECRET_UNUSABLE, SecretLookup};
use super::report::check_secret_command;
use crate::credential::pull_secret::{DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, PullSecretReading};

/// A pull secret of the Pod that exists but gives the kubelet nothing, or could not be read.
pub(super) fn pull_secrets_unusable(context: &Context) -> Vec<Cause> {
    let mut causes = Vec::new();
    for name in &context.pod_secrets {
        match context.evidence.secrets.get(name) {
            Some(SecretLookup::Found { .. }) => {
                causes.extend(unusable_cause(name, &context.namespace, &context.readings[name.as_str()]));
            }
            Some(SecretLookup::Unreadable(reason)) => causes.push(Cause {
                rank: RANK_SECRET_UNUSABLE,
                summary: format!("pull secret {name:?} could not be read: {reason}"),
                details: vec!["doctor needs `get` on Secrets in this namespace to check it".to_owned()],
                commands: Vec::new(),
            }),
            Some(SecretLookup::Missing) | None => {}
        }
    }
    causes
}

/// A Secret that exists but that the kubelet gets no credentials from.
fn unusable_cause(name: &str, namespace: &str, reading: &PullSecretReading) -> Option<Cause> {
    let recreate = format!(
        "kubectl create secret docker-registry {name} -n {namespace} --docker-server=<registry> --docker-username=<user> --docker-password=<password> --dry-run=client -o yaml | kubectl apply -f -"
    );
    let (summary, details, commands) = match reading {
        PullSecretReading::Config { normalized: Ok(_), registry_keys: Some(_), .. } => return None,
        PullSecretReading::Config { data_key, normalized, .. } => {
            let problems: Vec<String> = match normalized {
                Err(invalid) => invalid.problems.iter().map(ToString::to_string).collect(),
                Ok(_) => vec!["not valid JSON".to_owned()],
            };
            (
                format!("pull secret {name:?} holds an invalid docker config"),
                problems.into_iter().map(|p| format!("{data_key}: {p}")).collect(),
                vec![check_secret_command(name, namespace, data_key), recreate],
            )
        }
        PullSecretReading::WrongType { secret_type, data_key, expected_type } => (
            format!(
                "pull secret {name:?} has type {secret_type}; the kubelet only reads {data_key} from type {expected_type}"
            ),
            vec!["the type of a Secret cannot change in place: replace it".to_owned()],
            vec![format!(
                "kubectl get secret {name} -n {namespace} -o json | jq '.type = \"{expected_type}\" | del(.metadata.resourceVersion, .metadata.uid)' | kubectl replace --force -f -"
            )],
        ),
        PullSecretReading::MissingKey { secret_type, data_key } => {
            (format!("pull secret {name:?} has type {secret_type} but no {data_key}"), Vec::new(), vec![recreate])
        }
        PullSecretReading::NoConfig { secret_type } => (
            format!("{name:?} is a Secret of type {secret_type}, not a pull secret"),
            vec![format!("the kubelet needs type {DOCKER_CONFIG_JSON_TYPE} with {DOCKER_CONFIG_JSON_KEY}")],
            vec![recreate],
        ),
    };
    Some(Cause { rank: RANK_SECRET_UNUSABLE, summary, details, commands })
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::doctor::fixture::{own_list_evidence, summaries};
    use std::collections::BTreeMap;

    #[test]
    fn pull_secrets_unusable_or_unreadable() {
        let mut evidence = own_list_evidence();
        evidence.secrets.insert(
            "quay-pull".into(),
            SecretLookup::Found {
                secret_type: Some("Opaque".into()),
                data: BTreeMap::new(),
                created: None,
                copy_of: None,
            },
        );
        let causes = pull_secrets_unusable(&Context::new(&evidence));
        assert_eq!(summaries(&causes), ["\"quay-pull\" is a Secret of type Opaque, not a pull secret"]);
        evidence.secrets.insert("quay-pull".into(), SecretLookup::Unreadable("forbidden".into()));
        let causes = pull_secrets_unusable(&Context::new(&evidence));
        assert_eq!(summaries(&causes), ["pull secret \"quay-pull\" could not be read: forbidden"]);
        assert!(pull_secrets_unusable(&Context::new(&own_list_evidence())).is_empty());
    }
}
