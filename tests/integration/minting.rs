//! Minted credentials (`source.credentialProvider`): the operator runs a kubelet image credential
//! provider plugin over the real exec protocol with a ServiceAccount token from the real
//! TokenRequest API, under its own RBAC; refreshes before the credential lapses; keeps the last
//! good copy when a refresh fails; and reports each kind of bad plugin by its reason without
//! showing what the plugin printed.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use regcred_operator::crd::RegistryCredential;
use serde_json::{Value, json};

use regcred_test_support::cluster::wait_for;
use regcred_test_support::cluster_or_skip;
use regcred_test_support::fixture::*;
use regcred_test_support::plugins::*;

const REGISTRY: &str = "registry.mint.test";
/// What the minting plugin's passwords and every ServiceAccount token start with (`{"`, in
/// base64url): none of them may show anywhere but in the copies.
const JWT_PREFIX: &str = "eyJ";

fn condition(credential: &RegistryCredential, type_: &str) -> Option<(String, String, String)> {
    let found = credential.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((found.status.clone(), found.reason.clone(), found.message.clone()))
}

fn minting_source(name: &str, account: Option<(&str, &str)>) -> Value {
    let account = account.map(|(namespace, name)| json!({"namespace": namespace, "name": name}));
    json!({"source": {"secretRef": null, "credentialProvider": {
        "name": name, "image": format!("{REGISTRY}/team/app:1"), "serviceAccountRef": account}}})
}

/// Everything the operator showed of `credential`: its log, its status, its Events.
async fn shown(admin: &Client, fx: &Fixture, credential: &RegistryCredential) -> String {
    let api: Api<RegistryCredential> = Api::all(admin.clone());
    let status = serde_json::to_string(&api.get(&credential.name_any()).await.unwrap().status).unwrap();
    let events: Api<Event> = Api::namespaced(admin.clone(), "default");
    let notes: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(credential.name_any().as_str()))
        .map(|e| format!("{}: {}", e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect();
    format!("{}\n{status}\n{}", without_continue_tokens(&fx.operator.log()), notes.join("\n"))
}

/// The log without the list paging cursors of kube's debug lines (`continue=eyJ...`: base64 JSON
/// of the API server's, no credential), which a cluster of more than one page of
/// ServiceAccounts puts in the log and which begin as a JWT does.
fn without_continue_tokens(log: &str) -> String {
    let mut parts = log.split("continue=");
    let mut kept = parts.next().unwrap_or_default().to_owned();
    for part in parts {
        let cursor = part.find(|c: char| !(c.is_ascii_alphanumeric() || "-_=%".contains(c))).unwrap_or(part.len());
        kept.push_str("continue=(cursor)");
        kept.push_str(&part[cursor..]);
    }
    kept
}

#[test]
fn only_paging_cursors_leave_the_log_before_it_is_searched_for_tokens() {
    let log = "GET /api/v1/serviceaccounts?&limit=50&continue=eyJ2IjoiIn0 otel\npassword eyJhbGciOi\n";
    let kept = without_continue_tokens(log);
    assert_eq!(kept, "GET /api/v1/serviceaccounts?&limit=50&continue=(cursor) otel\npassword eyJhbGciOi\n");
    assert!(kept.contains(JWT_PREFIX), "a token elsewhere is still found");
}

#[tokio::test]
async fn a_minted_credential_is_refreshed_within_its_lifetime_with_the_accounts_token() {
    let admin = cluster_or_skip!();
    let plugins = Plugins::new("refresh");
    plugins.minting("mint");
    let lifetime = Duration::from_secs(6);
    let source_ns = regcred_test_support::cluster::TestNamespace::create(&admin, "src", &[]).await;
    let subject = format!("system:serviceaccount:{}:puller", source_ns.name);
    let mut env = plugins.minting_env(REGISTRY, lifetime);
    for (name, value) in [
        ("MINT_AUDIENCE", TEST_AUDIENCE.to_owned()),
        ("MINT_SUBJECT", subject),
        ("MINT_ANNOTATIONS", json!({"example.com/role": "puller-role"}).to_string()),
    ] {
        env.as_array_mut().unwrap().push(json!({"name": name, "value": value}));
    }
    let args = plugins.configure(
        vec![json!({"name": "mint", "matchImages": [REGISTRY], "defaultCacheDuration": "1h", "env": env,
            "tokenAttributes": {"serviceAccountTokenAudience": TEST_AUDIENCE, "requireServiceAccount": true,
                "cacheType": "ServiceAccount",
                "requiredServiceAccountAnnotationKeys": ["example.com/role"],
                "optionalServiceAccountAnnotationKeys": ["example.com/absent"]}})],
        10,
    );
    let annotations = json!({"example.com/role": "puller-role", "example.com/not-listed": "stays-in-the-cluster"});
    token_account(&admin, &source_ns.name, "puller", annotations, &["puller"]).await;
    let fx = Fixture::start_with_source(admin.clone(), "mint", source_ns, &args).await;
    let namespace = fx.namespace(true).await;
    let credential = fx.apply(&fx.credential("main", minting_source("mint", Some((&fx.source.name, "puller"))))).await;

    // Three refreshes after the first mint: each reaches the copy before the one before lapses.
    let (first, _) = wait_for_copy_user(&admin, &namespace.name, "regcred", REGISTRY, TIMEOUT, |_| true).await;
    wait_for_copy_user(&admin, &namespace.name, "regcred", REGISTRY, TIMEOUT, |(user, _)| user == "mint-4").await;
    let ready = fx.wait_ready(&credential, "True", "Synced").await;
    let calls = plugins.calls();
    assert_eq!(first, "mint-1");
    assert!(calls.iter().all(|c| c["audience"] == true && c["subject"] == true), "{calls:?}");
    assert_eq!(calls[0]["annotations"], json!(["example.com/role"]));
    // Of each credential's own lifetime: its `exp` is a whole second, up to 1 s short of the
    // plugin's `lifetime` after the call.
    let fractions: Vec<f64> = calls
        .windows(2)
        .take(3)
        .map(|pair| {
            let at = pair[0]["at"].as_f64().unwrap();
            (pair[1]["at"].as_f64().unwrap() - at) / (pair[0]["exp"].as_f64().unwrap() - at)
        })
        .collect();
    println!("refresh intervals as fractions of each credential's lifetime (at most {lifetime:?}): {fractions:.3?}");
    // 50-80 % of the lifetime, plus what one reconcile and one plugin run take.
    assert!(fractions.iter().all(|f| (0.5..0.9).contains(f)), "{fractions:?}");
    let expires_at = ready.status.as_ref().unwrap().expires_at.as_ref().map(|t| t.0.as_second());
    assert!(expires_at.is_some_and(|at| calls.iter().any(|c| c["exp"] == at)), "{expires_at:?} vs {calls:?}");
    let shown = shown(&admin, &fx, &credential).await;
    assert!(!shown.contains(JWT_PREFIX), "a token or a minted password was shown:\n{shown}");
}

#[tokio::test]
async fn a_failing_refresh_keeps_the_copy_until_it_expires_then_recovers() {
    let admin = cluster_or_skip!();
    let plugins = Plugins::new("failing");
    plugins.minting("mint");
    let env = plugins.minting_env(REGISTRY, Duration::from_secs(8));
    let args = plugins.configure(
        vec![json!({"name": "mint", "matchImages": [REGISTRY], "defaultCacheDuration": "1h", "env": env})],
        10,
    );
    let fx = Fixture::start(admin.clone(), "mintfail", &args).await;
    let namespace = fx.namespace(true).await;
    let credential = fx.apply(&fx.credential("main", minting_source("mint", None))).await;
    let kept = wait_for_copy_user(&admin, &namespace.name, "regcred", REGISTRY, TIMEOUT, |_| true).await;
    plugins.set_failing(true);

    // The refresh fails: still Ready, Reconciling with the plugin's reason, a Warning Event.
    let api: Api<RegistryCredential> = Api::all(admin.clone());
    let retrying = wait_for(&api, &credential.name_any(), "Reconciling=True (ProviderFailed)", TIMEOUT, |c| {
        c.and_then(|c| condition(c, "Reconciling"))
            .is_some_and(|(status, reason, _)| status == "True" && reason == "ProviderFailed")
    })
    .await
    .unwrap();
    assert_eq!(condition(&retrying, "Ready").map(|c| c.0), Some("True".into()));
    let message = condition(&retrying, "Reconciling").unwrap().2;
    assert!(message.contains("exited with status 1") && message.contains("bytes, not shown"), "{message}");
    let events: Api<Event> = Api::namespaced(admin.clone(), "default");
    let event = wait_for_event(&events, &credential.name_any(), "ProviderFailed").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));

    // The kept credential lapses: Expired, and the copy is still the last good one.
    let expired = fx.wait_ready(&credential, "False", "Expired").await;
    assert!(condition(&expired, "Ready").unwrap().2.contains("its refresh fails"));
    let copy = Api::<Secret>::namespaced(admin.clone(), &namespace.name).get("regcred").await.unwrap();
    assert_eq!(copy_login(&copy, REGISTRY), Some(kept.clone()), "a failed refresh never changes or removes the copy");

    // The plugin works again: the retry (backoff, at most 20 s here) mints and heals.
    plugins.set_failing(false);
    wait_for_copy_user(&admin, &namespace.name, "regcred", REGISTRY, Duration::from_secs(60), |(user, _)| {
        *user != kept.0
    })
    .await;
    fx.wait_ready(&credential, "True", "Synced").await;
    let shown = shown(&admin, &fx, &credential).await;
    assert!(!shown.contains("refusing to mint") && !shown.contains(JWT_PREFIX), "{shown}");
}

/// Plugins that go wrong each way the issue names, and what each must be reported as.
fn bad_plugins(plugins: &Plugins) -> Vec<(&'static str, &'static str)> {
    let response = |registry: &str| {
        json!({"apiVersion": "credentialprovider.kubelet.k8s.io/v1", "kind": "CredentialProviderResponse",
            "auth": {registry: {"username": "u", "password": "p-sentinel-password"}}})
        .to_string()
    };
    plugins.shell("hangs", "sleep 60");
    plugins.shell("fails", "echo 'token=stderr-sentinel-secret' >&2; exit 7");
    plugins.shell("garbage", "echo 'not json: stdout-sentinel-secret'");
    plugins.shell("huge", "yes 'stdout-sentinel-secret' | head -c 3000000");
    plugins.shell("elsewhere", &format!("cat >/dev/null; echo '{}'", response("other.example")));
    plugins.shell("good", &format!("cat >/dev/null; echo '{}'", response(REGISTRY)));
    vec![
        ("missing", "ProviderNotFound"),
        ("hangs", "ProviderTimedOut"),
        ("fails", "ProviderFailed"),
        ("garbage", "ProviderInvalidResponse"),
        ("huge", "ProviderOutputTooLarge"),
        ("elsewhere", "ProviderNoMatchingAuth"),
        ("not-configured", "ProviderNotConfigured"),
    ]
}

#[tokio::test]
async fn each_bad_plugin_has_its_reason_and_the_copy_stays() {
    let admin = cluster_or_skip!();
    let plugins = Plugins::new("bad");
    let cases = bad_plugins(&plugins);
    let provider = |name: &str| {
        json!({"name": name, "matchImages": [REGISTRY], "defaultCacheDuration": "1h",
        "env": [{"name": "PATH", "value": "/usr/bin:/bin"}]})
    };
    let mut providers: Vec<Value> =
        ["good", "missing", "hangs", "fails", "garbage", "huge", "elsewhere"].map(provider).to_vec();
    providers.push(json!({"name": "with-token", "matchImages": [REGISTRY], "defaultCacheDuration": "1h",
        "tokenAttributes": {"serviceAccountTokenAudience": TEST_AUDIENCE, "requireServiceAccount": true}}));
    plugins.shell("with-token", "exit 9");
    let args = plugins.configure(providers, 2);
    let fx = Fixture::start(admin.clone(), "badplugin", &args).await;
    token_account(&admin, &fx.source.name, "not-granted", json!({}), &["someone-else"]).await;
    let namespace = fx.namespace(true).await;
    let credential = fx.apply(&fx.credential("main", minting_source("good", None))).await;
    let good = wait_for_copy_user(&admin, &namespace.name, "regcred", REGISTRY, TIMEOUT, |(user, _)| user == "u").await;
    fx.wait_ready(&credential, "True", "Synced").await;

    let copies: Api<Secret> = Api::namespaced(admin.clone(), &namespace.name);
    let mut seen = Vec::new();
    let token_cases = [
        (json!({"name": "with-token"}), "ProviderNotConfigured"),
        (
            json!({"name": "good", "serviceAccountRef": {"namespace": fx.source.name, "name": "not-granted"}}),
            "ProviderNotConfigured",
        ),
        (
            json!({"name": "with-token", "serviceAccountRef": {"namespace": fx.source.name, "name": "not-granted"}}),
            "ServiceAccountTokenFailed",
        ),
        (
            json!({"name": "with-token", "serviceAccountRef": {"namespace": "default", "name": "default"}}),
            "SourceNotTrusted",
        ),
    ];
    let plugin_cases = cases.iter().map(|(name, reason)| (json!({"name": name}), *reason));
    for (source, reason) in plugin_cases.chain(token_cases) {
        let mut spec = minting_source("", None);
        merge(&mut spec["source"]["credentialProvider"], source.clone());
        let started = std::time::Instant::now();
        let generation = fx.apply(&fx.credential("main", spec)).await.metadata.generation;
        // The status of this very spec: the case before may have had the same reason.
        let api: Api<RegistryCredential> = Api::all(admin.clone());
        let failed = wait_for(&api, &credential.name_any(), reason, TIMEOUT, |c| {
            c.is_some_and(|c| {
                c.status.as_ref().and_then(|s| s.observed_generation) == generation
                    && condition(c, "Ready").is_some_and(|(status, why, _)| status == "False" && why == reason)
            })
        })
        .await
        .unwrap();
        let message = condition(&failed, "Ready").unwrap().2;
        seen.push(format!("{source}: {reason} in {:.1} s: {message}", started.elapsed().as_secs_f64()));
        assert_eq!(condition(&failed, "Stalled").map(|c| c.1), Some(reason.into()));
        let copy = copies.get("regcred").await.unwrap();
        assert_eq!(copy_login(&copy, REGISTRY), Some(good.clone()), "{source}: the copy changed");
    }
    println!("{}", seen.join("\n"));
    for (provider, result) in [("good", "success"), ("hangs", "ProviderTimedOut"), ("fails", "ProviderFailed")] {
        let sample = format!("regcred_credential_provider_runs_total{{provider=\"{provider}\",result=\"{result}\"}}");
        assert!(fx.operator.metric(&sample).await >= 1.0, "{sample}");
    }
    let shown = shown(&admin, &fx, &credential).await;
    for sentinel in ["sentinel", JWT_PREFIX] {
        assert!(!shown.contains(sentinel), "{sentinel} was shown:\n{shown}");
    }
    let fails = seen.iter().find(|line| line.contains("ProviderFailed")).unwrap();
    assert!(fails.contains("exited with status 7 (stderr: 29 bytes, not shown)"), "{fails}");
}

/// The directory of tests/cluster/build-expiry-tools.sh (`REGCRED_EXPIRY_TOOLS_BIN`, which
/// tests/run.sh sets), or `None` (the reason printed); with `CI=true` its absence is a failure.
fn expiry_tools() -> Option<std::path::PathBuf> {
    let Some(dir) = std::env::var_os("REGCRED_EXPIRY_TOOLS_BIN").filter(|d| !d.is_empty()) else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but REGCRED_EXPIRY_TOOLS_BIN is not set");
        eprintln!("skipped: REGCRED_EXPIRY_TOOLS_BIN is not set (tests/cluster/build-expiry-tools.sh prints it)");
        return None;
    };
    Some(dir.into())
}

/// A local AWS-compatible endpoint, killed when dropped.
struct Endpoint {
    child: std::process::Child,
    url: String,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Endpoint {
    /// Starts `program args... PORT` on a free loopback port and waits until it answers.
    async fn start(program: &std::path::Path, args: &[&str], log: &std::path::Path) -> Endpoint {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(program)
            .args(args)
            .arg(port.to_string())
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "{} did not listen on {port}", program.display());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Endpoint { child, url: format!("http://127.0.0.1:{port}") }
    }
}

/// The upstream plugin's provider entry, with the AWS endpoints at `url` and the role from the
/// ServiceAccount's annotation (KEP-4412's token path; no AWS key anywhere).
fn ecr_provider(name: &str, url: &str) -> Value {
    let env: Vec<Value> = [
        ("AWS_ENDPOINT_URL_ECR", url),
        ("AWS_ENDPOINT_URL_STS", url),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_REGION", "us-east-1"),
    ]
    .iter()
    .map(|(name, value)| json!({"name": name, "value": value}))
    .collect();
    json!({"name": name, "matchImages": ["*.dkr.ecr.*.amazonaws.com"], "defaultCacheDuration": "12h", "env": env,
        "tokenAttributes": {"serviceAccountTokenAudience": "sts.amazonaws.com", "requireServiceAccount": true,
            "cacheType": "ServiceAccount", "requiredServiceAccountAnnotationKeys": ["eks.amazonaws.com/ecr-role-arn"]}})
}

#[tokio::test]
async fn the_upstream_ecr_plugin_mints_through_the_account_token_against_a_local_aws_endpoint() {
    let admin = cluster_or_skip!();
    let Some(tools) = expiry_tools() else { return };
    let plugins = Plugins::new("ecr");
    plugins.link("ecr-credential-provider", &tools.join("ecr-credential-provider"));
    plugins.link("ecr-via-stub", &tools.join("ecr-credential-provider"));
    let moto =
        Endpoint::start(&tools.join("moto_server"), &["-H", "127.0.0.1", "-p"], &plugins.state.join("moto.log")).await;
    let stub_state = plugins.state.join("stub.env");
    let rotate = |password: &str| {
        let next = plugins.state.join("stub.env.next");
        std::fs::write(&next, format!("password={password}\nlifetime=16\n")).unwrap();
        std::fs::rename(&next, &stub_state).unwrap();
    };
    rotate("first-stub-password");
    let stub_log = plugins.state.join("stub.log");
    let script = regcred_test_support::repo().join("tests/expiry/ecr-stub.py");
    let state_arg = stub_state.display().to_string();
    let log_arg = stub_log.display().to_string();
    let stub_args = [script.to_str().unwrap(), "--state", &state_arg, "--log", &log_arg, "--port"];
    let stub = Endpoint::start(std::path::Path::new("python3"), &stub_args, &plugins.state.join("stub.out")).await;
    let args = plugins.configure(
        vec![ecr_provider("ecr-credential-provider", &moto.url), ecr_provider("ecr-via-stub", &stub.url)],
        30,
    );
    let fx = Fixture::start(admin.clone(), "ecr", &args).await;
    let role = json!({"eks.amazonaws.com/ecr-role-arn": "arn:aws:iam::210987654321:role/puller"});
    token_account(&admin, &fx.source.name, "ecr-puller", role, &["ecr-puller"]).await;
    let namespace = fx.namespace(true).await;
    let registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    let source = |provider: &str, secret: &str| {
        json!({"secretName": secret, "source": {"secretRef": null, "credentialProvider": {"name": provider,
            "image": format!("{registry}/team/app:1"), "serviceAccountRef": {"namespace": fx.source.name, "name": "ecr-puller"}}}})
    };

    // moto: its password names the account of the role assumed with the token.
    let via_moto = fx.apply(&fx.credential("moto", source("ecr-credential-provider", "ecr-moto"))).await;
    let login = wait_for_copy_user(&admin, &namespace.name, "ecr-moto", registry, TIMEOUT, |_| true).await;
    assert_eq!(login, ("AWS".to_owned(), "210987654321-auth-token".to_owned()));
    fx.wait_ready(&via_moto, "True", "Synced").await;

    // The stub: a 16 s token, so the plugin answers cacheDuration 8s; a rotated password reaches
    // the copy at the next refresh, with no change to anything in the cluster.
    let via_stub = fx.apply(&fx.credential("stub", source("ecr-via-stub", "ecr-stub"))).await;
    let first = wait_for_copy_user(&admin, &namespace.name, "ecr-stub", registry, TIMEOUT, |_| true).await;
    assert_eq!(first.1, "first-stub-password");
    let rotated_at = std::time::Instant::now();
    rotate("second-stub-password");
    let second = wait_for_copy_user(&admin, &namespace.name, "ecr-stub", registry, Duration::from_secs(30), |login| {
        login.1 == "second-stub-password"
    })
    .await;
    println!(
        "ecr via stub: rotated password in the copy {:.1} s after the rotation (lifetime 8 s)",
        rotated_at.elapsed().as_secs_f64()
    );
    assert_eq!(second.0, "AWS");
    fx.wait_ready(&via_stub, "True", "Synced").await;
    let calls = std::fs::read_to_string(&stub_log).unwrap();
    assert!(calls.contains("AssumeRoleWithWebIdentity") && calls.contains("\"webIdentityToken\": true"), "{calls}");
    assert!(calls.contains("arn:aws:iam::210987654321:role/puller"), "{calls}");
    let shown = shown(&admin, &fx, &via_stub).await;
    assert!(
        !shown.contains("stub-password") && !shown.contains("auth-token") && !shown.contains(JWT_PREFIX),
        "{shown}"
    );
}
