//! A pull secret whose credential has expired: its password's own `exp`, or the expiry the
//! RegistryCredential whose copy it is states (`status.expiresAt`).

use std::collections::BTreeSet;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::evidence::{Cause, Context, RANK_REFUSED, SecretLookup};
use crate::credential::pull_secret::PullSecretReading;

/// For each pull secret that covers an image, whether the credential the kubelet sends has expired.
pub(super) fn credential_expired(context: &Context) -> Vec<Cause> {
    let now = context.evidence.read_at;
    let covering: BTreeSet<&str> = context
        .images
        .iter()
        .filter_map(|check| check.covered_by.as_ref().map(|(secret, _)| secret.as_str()))
        .collect();
    covering.into_iter().filter_map(|secret| expired(context, secret, now)).collect()
}

fn expired(context: &Context, secret: &str, now: Timestamp) -> Option<Cause> {
    let at = |time: Timestamp| time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    // The credential that controls this very Secret: a Secret of the same name in a namespace the
    // credential does not manage is someone else's.
    let controller = match context.evidence.secrets.get(secret) {
        Some(SecretLookup::Found { copy_of: Some(uid), .. }) => Some(uid.as_str()),
        _ => None,
    };
    let copy_of = context.evidence.credentials.iter().find(|credential| {
        controller.is_some_and(|uid| credential.metadata.uid.as_deref() == Some(uid))
            && credential.spec.secret_name == secret
            && credential.status.as_ref().and_then(|s| s.expires_at.as_ref()).is_some_and(|t| t.0 <= now)
    });
    if let Some(credential) = copy_of {
        let name = credential.name_any();
        let expires_at = credential.status.as_ref()?.expires_at.as_ref()?.0;
        return Some(Cause {
            rank: RANK_REFUSED,
            summary: format!("the copy's credential expired at {}", at(expires_at)),
            details: vec![format!(
                "Secret {secret} is the copy of RegistryCredential {name}, whose status.expiresAt has passed: whatever refreshes its source (a Secret, or a credential provider) has stopped; its Ready condition says why"
            )],
            commands: vec![format!("kubectl get registrycredential {name} -o jsonpath='{{.status.conditions}}'")],
        });
    }
    let PullSecretReading::Config { normalized: Ok(normalized), .. } = context.readings.get(secret)? else {
        return None;
    };
    let exp = normalized.config.token_expiry().filter(|exp| *exp <= now)?;
    Some(Cause {
        rank: RANK_REFUSED,
        summary: format!("the pull secret's credential expired at {}", at(exp)),
        details: vec![format!(
            "a password in Secret {secret} is a token whose exp claim has passed: the registry refuses it; write a fresh one"
        )],
        commands: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use k8s_openapi::api::core::v1::LocalObjectReference;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::cli::doctor::fixture::{credential, own_list_evidence, summaries};
    use crate::crd::RegistryCredentialStatus;
    use crate::credential::pull_secret::{DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE};

    const NOW: &str = "2026-12-04T12:00:00Z";

    #[test]
    fn a_copy_whose_credential_states_a_past_expiry_is_named_with_its_credential() {
        let mut evidence = own_list_evidence();
        let copy = LocalObjectReference { name: "regcred".into() };
        evidence.pod.spec.as_mut().unwrap().image_pull_secrets = Some(vec![copy]);
        evidence.read_at = NOW.parse().unwrap();
        let mut corp = credential(&["*"], &[], None);
        corp.status = Some(RegistryCredentialStatus {
            expires_at: Some(Time("2026-12-04T11:00:00Z".parse().unwrap())),
            ..Default::default()
        });
        corp.metadata.uid = Some("corp-uid".into());
        evidence.credentials = vec![corp.clone()];
        assert!(
            credential_expired(&Context::new(&evidence)).is_empty(),
            "a Secret of the same name that no credential controls is no copy"
        );
        if let Some(SecretLookup::Found { copy_of, .. }) = evidence.secrets.get_mut("regcred") {
            *copy_of = Some("corp-uid".into());
        }
        let causes = credential_expired(&Context::new(&evidence));
        assert_eq!(summaries(&causes), ["the copy's credential expired at 2026-12-04T11:00:00Z"]);
        assert!(causes[0].details[0].contains("RegistryCredential corp"));
        // Not yet expired: nothing.
        corp.status.as_mut().unwrap().expires_at = Some(Time("2026-12-04T13:00:00Z".parse().unwrap()));
        evidence.credentials = vec![corp];
        assert!(credential_expired(&Context::new(&evidence)).is_empty());
    }

    #[test]
    fn a_pull_secret_holding_an_expired_token_is_named_without_the_token() {
        let mut evidence = own_list_evidence();
        evidence.read_at = NOW.parse().unwrap();
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"exp":1764000000}"#);
        let token = format!("eyJhbGciOiJub25lIn0.{claims}.c2ln");
        let config = format!(r#"{{"auths":{{"registry.corp":{{"username":"u","password":"{token}"}}}}}}"#);
        evidence.secrets.insert(
            "quay-pull".into(),
            SecretLookup::Found {
                secret_type: Some(DOCKER_CONFIG_JSON_TYPE.to_owned()),
                data: [(DOCKER_CONFIG_JSON_KEY.to_owned(), config.into_bytes())].into(),
                created: None,
                copy_of: None,
            },
        );
        let causes = credential_expired(&Context::new(&evidence));
        assert_eq!(summaries(&causes), ["the pull secret's credential expired at 2025-11-24T16:00:00Z"]);
        assert!(!format!("{causes:?}").contains(&token));
    }
}
