//! Minted sources: a RegistryCredential whose `spec.source.credentialProvider` asks a kubelet
//! image credential provider plugin for the credential. The operator requests the named
//! ServiceAccount's token for the provider's audience (TokenRequest API), runs the plugin, and
//! keeps what it answered until a refresh at a random 50-80 % of its lifetime; a failed refresh
//! is retried with backoff while the last good credential stays in the copies.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};

use super::source::{ResolvedSource, SourceProblem, resolve_minted};
use crate::crd::{CredentialProviderSource, RegistryCredentialSpec};
use crate::credential::ImageReference;
use crate::provider::config::{Provider, Providers};
use crate::provider::exec;
use crate::provider::protocol::{CredentialProviderRequest, CredentialProviderResponse, ResponseProblem};

/// The lifetime of the token passed to a plugin: the shortest the API server grants. The plugin
/// exchanges it at once.
const TOKEN_SECONDS: i64 = 600;
/// The first retry after a failed mint, doubled on each failure up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(10);
const MAX_RETRY: Duration = Duration::from_secs(300);
/// A refresh is due at a random fraction in this range of the credential's lifetime.
const REFRESH_FRACTION: (f64, f64) = (0.5, 0.8);
/// The longest a minted credential is kept without asking again, whatever the plugin answers.
const MAX_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// The soonest a refresh follows a mint: a plugin that answers a credential already expired (or
/// a lifetime of nothing) is asked again at this pace, never in a loop.
const MIN_REFRESH: Duration = Duration::from_secs(1);

/// What a minting credential remembers between reconciles.
#[derive(Default)]
pub(crate) struct MintState {
    /// What the state is for: the credential's source and registries (see [`source_key`]); a
    /// change there starts afresh, any other edit of the spec keeps the credential minted.
    key: String,
    /// The last credential minted, and when it was.
    good: Option<ResolvedSource>,
    /// When the plugin is to run next.
    next_run: Option<Instant>,
    failures: u32,
    last: Option<Result<ResolvedSource, SourceProblem>>,
}

impl MintState {
    /// The resolution to show now, minting when one is due. `mint` runs the plugin.
    pub(crate) async fn resolve<F, Fut>(&mut self, key: &str, now: Instant, mint: F) -> Minting
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Minted, SourceProblem>>,
    {
        if self.key != key {
            *self = MintState { key: key.to_owned(), ..MintState::default() };
        }
        if let (Some(last), Some(next)) = (&self.last, self.next_run)
            && now < next
        {
            return Minting { resolution: last.clone(), minted: false, failure: None };
        }
        let outcome = mint().await;
        // The next run counts from the end of this one: a run that took long is no reason to
        // run again at once.
        let now = now.max(Instant::now());
        let minted = outcome.is_ok();
        let failure = outcome.as_ref().err().cloned();
        let resolution = match outcome {
            Ok(Minted { source, lifetime }) => {
                self.failures = 0;
                self.next_run = Some(later(now, refresh_after(lifetime, fastrand::f64())));
                self.good = Some(source.clone());
                Ok(source)
            }
            Err(problem) => {
                self.failures = self.failures.saturating_add(1);
                let until_expiry = self.good.as_ref().and_then(|good| good.expiry).map(|expiry| {
                    let left = expiry.at.duration_since(Timestamp::now());
                    Duration::try_from(left).unwrap_or_default()
                });
                self.next_run = Some(later(now, retry_after(self.failures, until_expiry)));
                match &self.good {
                    Some(good) => Ok(ResolvedSource { refresh_failure: Some(problem), ..good.clone() }),
                    None => Err(problem),
                }
            }
        };
        self.last = Some(resolution.clone());
        Minting { resolution, minted, failure }
    }

    /// When the plugin runs next.
    pub(crate) fn next_run(&self) -> Option<Instant> {
        self.next_run
    }

    /// The digest of the credential the copies should hold now.
    pub(crate) fn current_digest(&self) -> Option<String> {
        self.good.as_ref().map(|good| good.digest.clone())
    }
}

/// A resolution, and whether a plugin run produced it just now.
pub(crate) struct Minting {
    pub(crate) resolution: Result<ResolvedSource, SourceProblem>,
    pub(crate) minted: bool,
    /// Why the mint tried just now failed; `None` when none was tried or it minted.
    pub(crate) failure: Option<SourceProblem>,
}

impl Minting {
    /// Whether a mint was tried just now.
    pub(crate) fn tried(&self) -> bool {
        self.minted || self.failure.is_some()
    }
}

/// A credential a plugin answered, and how long it lives.
pub(crate) struct Minted {
    pub(crate) source: ResolvedSource,
    pub(crate) lifetime: Duration,
}

/// `delay` after `now`, or as far as an `Instant` goes.
fn later(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay.min(MAX_LIFETIME)).unwrap_or(now)
}

/// What a minting credential's state is keyed by: its source and its registries, as JSON.
pub(crate) fn source_key(spec: &RegistryCredentialSpec) -> String {
    serde_json::to_string(&(&spec.source, &spec.registries)).expect("a spec serializes")
}

/// When to refresh a credential living `lifetime`: at `fraction_seed` (0..1) across the
/// 50-80 % range, so that replicas and credentials do not all refresh at once.
pub(crate) fn refresh_after(lifetime: Duration, fraction_seed: f64) -> Duration {
    let (low, high) = REFRESH_FRACTION;
    lifetime.mul_f64(low + (high - low) * fraction_seed.clamp(0.0, 1.0)).max(MIN_REFRESH)
}

/// The delay before the next attempt after `failures` failures in a row: doubling from
/// [`FIRST_RETRY`] up to [`MAX_RETRY`], and never past the kept credential's expiry.
pub(crate) fn retry_after(failures: u32, until_expiry: Option<Duration>) -> Duration {
    let backoff = FIRST_RETRY.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(MAX_RETRY);
    match until_expiry {
        Some(left) if !left.is_zero() => backoff.min(left).max(Duration::from_secs(1)),
        _ => backoff,
    }
}

/// The lifetime of a minted credential: the shorter of the plugin's `cacheDuration` (the
/// provider's default when it gives none) and the time to the password's stated expiry.
pub(crate) fn lifetime(cache_duration: Option<Duration>, default: Duration, expires_in: Option<Duration>) -> Duration {
    let cached = cache_duration.unwrap_or(default).min(MAX_LIFETIME);
    expires_in.map_or(cached, |left| cached.min(left))
}

/// Asks the provider for the credential of `spec`: the checks, the token, one plugin run.
pub(crate) async fn mint(
    client: &Client,
    spec: &RegistryCredentialSpec,
    source: &CredentialProviderSource,
    providers: &Providers,
    trusted_namespaces: &[String],
) -> Result<Minted, SourceProblem> {
    let provider = provider_for(source, providers)?;
    let identity = match &source.service_account_ref {
        Some(reference) => {
            let attributes = provider.token_attributes.as_ref().expect("checked by provider_for");
            if !trusted_namespaces.contains(&reference.namespace) {
                return Err(SourceProblem::ServiceAccountNotTrusted {
                    namespace: reference.namespace.clone(),
                    name: reference.name.clone(),
                    trusted: trusted_namespaces.join(", "),
                });
            }
            let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &reference.namespace);
            let token_problem = |why: String| SourceProblem::ServiceAccountToken {
                namespace: reference.namespace.clone(),
                name: reference.name.clone(),
                why,
            };
            let account = api.get_opt(&reference.name).await.map_err(|e| token_problem(describe(&e)))?;
            let account = account.ok_or_else(|| token_problem("not found".into()))?;
            let annotations = passed_annotations(&account, attributes).map_err(token_problem)?;
            let token = request_token(&api, &reference.name, &attributes.service_account_token_audience)
                .await
                .map_err(|e| token_problem(describe(&e)))?
                .ok_or_else(|| token_problem("the TokenRequest returned no token".into()))?;
            Some((token, annotations))
        }
        None => None,
    };
    let mut request = CredentialProviderRequest::new(&source.image);
    if let Some((token, annotations)) = &identity {
        request.service_account_token = Some(token);
        request.service_account_annotations = annotations.clone();
    }
    let request = serde_json::to_vec(&request).expect("a request serializes");
    let stdout = exec::run(provider, &request, providers.timeout).await.map_err(SourceProblem::Run)?;
    let invalid = |problem| SourceProblem::InvalidResponse { provider: provider.name.clone(), problem };
    let response = CredentialProviderResponse::parse(&stdout).map_err(invalid)?;
    let cache_duration = response.cache_duration().map_err(invalid)?;
    let source = resolve_minted(spec, source, &response)?;
    let expires_in =
        source.expiry.map(|expiry| Duration::try_from(expiry.at.duration_since(Timestamp::now())).unwrap_or_default());
    if expires_in.is_some_and(|left| left.is_zero()) {
        // Taken as it is, it would be asked for again at once, and again.
        return Err(invalid(ResponseProblem::AlreadyExpired));
    }
    Ok(Minted { lifetime: lifetime(cache_duration, provider.default_cache_duration, expires_in), source })
}

/// The provider `source` names, when the operator's config has it, its `matchImages` cover the
/// image, and the ServiceAccount reference fits its `tokenAttributes`.
fn provider_for<'p>(
    source: &CredentialProviderSource,
    providers: &'p Providers,
) -> Result<&'p Provider, SourceProblem> {
    let not_configured = |why: String| SourceProblem::ProviderNotConfigured { provider: source.name.clone(), why };
    let Some(provider) = providers.by_name.get(&source.name) else {
        return Err(not_configured(if !providers.configured {
            "the operator was started without --credential-provider-config".into()
        } else {
            "not in the operator's credential provider config".into()
        }));
    };
    let image = ImageReference::parse(&source.image)
        .map_err(|error| not_configured(format!("spec.source.credentialProvider.image: {error}")))?;
    if !provider.matches(&image) {
        return Err(not_configured(format!("its matchImages do not cover the image {:?}", image.name())));
    }
    match (&provider.token_attributes, &source.service_account_ref) {
        (None, Some(_)) => Err(not_configured(
            "it takes no ServiceAccount token (no tokenAttributes): remove serviceAccountRef".into(),
        )),
        (Some(attributes), None) if attributes.require_service_account == Some(true) => {
            Err(not_configured("it requires a ServiceAccount: set serviceAccountRef".into()))
        }
        _ => Ok(provider),
    }
}

/// The ServiceAccount annotations the provider lists (required ones must be there), as the
/// kubelet passes them; no other annotation leaves the cluster.
fn passed_annotations(
    account: &ServiceAccount,
    attributes: &crate::provider::config::TokenAttributes,
) -> Result<BTreeMap<String, String>, String> {
    let annotations = account.annotations();
    let mut passed = BTreeMap::new();
    for key in &attributes.required_service_account_annotation_keys {
        let value =
            annotations.get(key).ok_or_else(|| format!("lacks the annotation {key:?} the provider requires"))?;
        passed.insert(key.clone(), value.clone());
    }
    for key in &attributes.optional_service_account_annotation_keys {
        if let Some(value) = annotations.get(key) {
            passed.insert(key.clone(), value.clone());
        }
    }
    Ok(passed)
}

async fn request_token(api: &Api<ServiceAccount>, name: &str, audience: &str) -> kube::Result<Option<String>> {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![audience.to_owned()],
            expiration_seconds: Some(TOKEN_SECONDS),
            bound_object_ref: None,
        },
        ..TokenRequest::default()
    };
    let answer = api.create_token_request(name, &PostParams::default(), &request).await?;
    Ok(answer.status.map(|status| status.token).filter(|token| !token.is_empty()))
}

/// An API error as status may show it: the server's message, never a request body.
fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_falls_between_half_and_four_fifths_of_the_lifetime() {
        let hour = Duration::from_secs(3600);
        assert_eq!(refresh_after(hour, 0.0), Duration::from_secs(1800));
        assert_eq!(refresh_after(hour, 1.0), Duration::from_secs(2880));
        // A credential that lives no time is not asked for again in a loop.
        assert_eq!(refresh_after(Duration::ZERO, 0.5), MIN_REFRESH);
        for seed in [0.1, 0.37, 0.99] {
            let at = refresh_after(hour, seed);
            assert!(at > Duration::from_secs(1800) && at < Duration::from_secs(2880), "{at:?}");
        }
    }

    #[test]
    fn retries_double_to_five_minutes_and_never_wait_past_the_expiry() {
        let secs = Duration::from_secs;
        let delays: Vec<_> = (1..=7).map(|n| retry_after(n, None)).collect();
        assert_eq!(delays, [secs(10), secs(20), secs(40), secs(80), secs(160), secs(300), secs(300)]);
        assert_eq!(retry_after(40, None), secs(300));
        assert_eq!(retry_after(5, Some(secs(30))), secs(30));
        assert_eq!(retry_after(1, Some(Duration::from_millis(200))), secs(1));
        assert_eq!(retry_after(1, Some(Duration::ZERO)), secs(10));
    }

    #[test]
    fn the_lifetime_is_the_shorter_of_cache_duration_and_expiry_else_the_default() {
        let (secs, default) = (Duration::from_secs, Duration::from_secs(12 * 3600));
        assert_eq!(lifetime(None, default, None), default);
        assert_eq!(lifetime(Some(secs(1800)), default, None), secs(1800));
        assert_eq!(lifetime(Some(secs(1800)), default, Some(secs(8))), secs(8));
        assert_eq!(lifetime(None, default, Some(secs(3600))), secs(3600));
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;

    fn minted(password: &str) -> Result<Minted, SourceProblem> {
        let payload = format!(r#"{{"auths":{{"r.example":{{"username":"u","password":"{password}"}}}}}}"#);
        let normalized = crate::credential::normalize_docker_config(payload.as_bytes()).unwrap();
        Ok(Minted { source: ResolvedSource::from_normalized_for_tests(normalized), lifetime: Duration::from_secs(100) })
    }

    fn failed() -> Result<Minted, SourceProblem> {
        Err(SourceProblem::ProviderNotConfigured { provider: "p".into(), why: "test".into() })
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_last_good_credential_and_is_retried_with_backoff() {
        let mut state = MintState::default();
        let start = Instant::now();
        let first = state.resolve("one", start, || async { minted("one") }).await;
        assert!(first.minted);
        let good = first.resolution.clone().unwrap();
        let due = state.next_run().unwrap() - start;
        assert!(due >= Duration::from_secs(50) && due <= Duration::from_secs(80), "{due:?}");

        // Not due yet: the plugin does not run.
        let early = state.resolve("one", start + Duration::from_secs(10), || async { panic!("ran early") }).await;
        assert!(!early.minted);

        let later = start + Duration::from_secs(90);
        let failing = state.resolve("one", later, || async { failed() }).await;
        let kept = failing.resolution.unwrap();
        assert_eq!((kept.digest.as_str(), kept.refresh_failure.is_some()), (good.digest.as_str(), true));
        assert_eq!(state.next_run().unwrap() - later, Duration::from_secs(10));
        let again = state.resolve("one", later + Duration::from_secs(10), || async { failed() }).await;
        assert!(again.resolution.is_ok());
        assert_eq!(state.next_run().unwrap() - later - Duration::from_secs(10), Duration::from_secs(20));

        let recovered = state.resolve("one", later + Duration::from_secs(30), || async { minted("two") }).await;
        let fresh = recovered.resolution.unwrap();
        assert!(fresh.refresh_failure.is_none() && fresh.digest != good.digest);
    }

    #[tokio::test]
    async fn without_a_good_credential_a_failure_is_the_resolution_and_a_new_spec_starts_afresh() {
        let mut state = MintState::default();
        let now = Instant::now();
        assert!(state.resolve("one", now, || async { failed() }).await.resolution.is_err());
        assert!(state.resolve("one", now, || async { minted("one") }).await.resolution.is_err(), "retried too early");
        assert!(state.resolve("one", now + Duration::from_secs(11), || async { minted("one") }).await.minted);
        // A new source: the old credential is not kept for it.
        let changed = state.resolve("two", now + Duration::from_secs(12), || async { failed() }).await;
        assert!(changed.resolution.is_err());
    }
}
