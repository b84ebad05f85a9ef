//! `regcred-operator lint` as CI pipelines use it: files, directories and stdin in; findings,
//! corrected manifests and exit codes out.

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use regcred_operator::cli::lint::Code;
use serde_json::Value as Json;
use serde_norway::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/lint");

fn lint(args: &[&str], stdin: &str) -> Output {
    regcred_test_support::cli::run_cli("lint", args, stdin)
}

fn fixture(name: &str) -> String {
    format!("{FIXTURES}/{name}")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The findings of a `--format json` run, as (code, severity, line, path) tuples.
fn findings(out: &Output) -> Vec<(String, String, u64, String)> {
    let report: Json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_owned(),
                f["severity"].as_str().unwrap().to_owned(),
                f["line"].as_u64().unwrap(),
                f["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn documents(yaml: &[u8]) -> Vec<Value> {
    serde_norway::Deserializer::from_slice(yaml).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect()
}

fn decoded_config(secret: &Value) -> Json {
    let data = secret["data"][".dockerconfigjson"].as_str().expect("data .dockerconfigjson");
    serde_json::from_slice(&STANDARD.decode(data).unwrap()).unwrap()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("regcred-lint-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        path
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn seed_article_example_is_caught_where_it_is_written() {
    let out = lint(&["--format", "json", &fixture("seed-article.yaml")], "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let data = r#"data[".dockerconfigjson"]"#.to_owned();
    assert_eq!(
        findings(&out),
        vec![
            ("RC002".into(), "error".into(), 10, data.clone()),
            ("RC003".into(), "warning".into(), 10, data),
            ("RC010".into(), "error".into(), 19, "spec.imagePullSecrets[0].name".into()),
        ]
    );
    let report: Json = serde_json::from_slice(&out.stdout).unwrap();
    let missing = &report["findings"][2];
    assert_eq!(missing["object"], "Pod production/app-worker");
    assert_eq!(missing["document"], 2);
    assert!(missing["message"].as_str().unwrap().contains("did you mean Secret default/reg-cred?"), "{missing}");
    assert_eq!(missing["fix"], "rename Secret default/reg-cred to regcred, and move it to namespace production");
}

#[test]
fn seed_article_fix_renames_and_moves_the_secret_and_reports_the_empty_credentials() {
    let out = lint(&["--fix", &fixture("seed-article.yaml")], "");
    assert_eq!(out.status.code(), Some(1), "the empty credentials cannot be fixed");
    let docs = documents(&out.stdout);
    assert_eq!(docs.len(), 2);
    let (secret, pod) = (&docs[0], &docs[1]);
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["metadata"]["name"], "regcred");
    assert_eq!(secret["metadata"]["namespace"], "production");
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(decoded_config(secret), serde_json::json!({"auths": {"https://registry.internal.corp/v2/": {}}}));
    assert_eq!(pod["metadata"]["namespace"], "production");
    assert_eq!(pod["spec"]["imagePullSecrets"][0]["name"], "regcred");
    assert_eq!(pod["spec"]["containers"][0]["image"], "registry.internal.corp/app:v2.1.0");

    let stderr = text(&out.stderr);
    assert!(stderr.contains("not fixed (2 left)"), "{stderr}");
    assert!(stderr.contains("error RC002: Secret production/regcred"), "{stderr}");
    assert!(
        stderr.contains("kubectl create secret docker-registry regcred --docker-server=registry.internal.corp"),
        "{stderr}"
    );
    assert!(!stderr.contains("RC010") && !stderr.contains("RC011"), "{stderr}");
}

#[test]
fn a_directory_is_fixed_into_manifests_that_lint_clean() {
    let out = lint(&["--fix", &fixture("fixable")], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let docs = documents(&out.stdout);
    let deployment = &docs[0];
    assert_eq!(deployment["spec"]["template"]["spec"]["imagePullSecrets"][0]["name"], "registry-cred");
    let secret = &docs[1];
    assert_eq!(secret["metadata"]["name"], "registry-cred", "renamed to what the Deployment references");
    assert_eq!(secret["metadata"]["namespace"], "payments");
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson", "Opaque is not read as a pull secret");
    let auth = STANDARD.encode("svc-k8s-pull:token");
    assert_eq!(
        decoded_config(secret),
        serde_json::json!({"auths": {
            // The host as written is kept: the kubelet matches it for images that spell it so.
            "Registry.Internal.Corp": {"auth": auth, "password": "token", "username": "svc-k8s-pull"},
            "registry.internal.corp": {"auth": auth, "password": "token", "username": "svc-k8s-pull"},
        }})
    );

    let relint = lint(&["-"], &text(&out.stdout));
    assert_eq!(relint.status.code(), Some(0), "{}", text(&relint.stdout));
}

#[test]
fn workloads_service_accounts_registry_credentials_and_lists() {
    let out = lint(&["--format", "json", &fixture("workloads.yaml")], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        findings(&out),
        vec![
            // `quay.io/search-team` without a trailing slash also matches `quay.io/search-teamx/...`.
            ("RC005".into(), "warning".into(), 33, "stringData[\".dockerconfigjson\"]".into()),
            ("RC012".into(), "warning".into(), 52, "spec.jobTemplate.spec.template.spec.containers[1].image".into()),
            ("RC011".into(), "error".into(), 63, "spec.template.spec.imagePullSecrets[0].name".into()),
            ("RC013".into(), "warning".into(), 80, "items[0].spec.template.spec.containers[1].image".into()),
            ("RC010".into(), "error".into(), 85, "items[1].spec.imagePullSecrets[0].name".into()),
        ],
        "the CronJob's first image is covered through ServiceAccount indexer, the Docker Hub image is not judged"
    );
    let fixed = lint(&["--fix", &fixture("workloads.yaml")], "");
    let list = documents(&fixed.stdout).into_iter().find(|d| d["kind"] == "List").unwrap();
    assert_eq!(
        list["items"][1]["spec"]["imagePullSecrets"][0]["name"], "regcred",
        "the reference now names the copy that RegistryCredential internal-corp makes in payments"
    );
    let stderr = text(&fixed.stderr);
    assert!(stderr.contains("not fixed (4 left)"), "{stderr}");
    assert!(stderr.contains("RC011: Job batch/backfill"), "Secret search/quay-pull has users in search: {stderr}");
}

#[test]
fn credential_values_are_never_printed() {
    let sentinel = "Sentinel-Pa55word-7f3a";
    let auth = STANDARD.encode(format!("svc:{sentinel}"));
    let configs = [
        format!(r#"{{"auths":{{"https://registry.corp/v2/":{{"username":"svc","password":"{sentinel}"}}}}}}"#),
        format!(r#"{{"auths":{{"registry.corp":{{"auth":"{auth}","password":"other-{sentinel}"}}}}}}"#),
        format!(r#"{{"auths":{{"registry.corp":{{"username":"{sentinel}:x","password":"{sentinel}"}}}}}}"#),
        format!(r#"{{"auths":{{"registry.corp":{{"password":"{sentinel}" "#),
        format!(
            r#"{{"auths":{{"*.corp":{{"username":"svc","password":"{sentinel}","identitytoken":"{sentinel}"}}}}}}"#
        ),
    ];
    let dir = TempDir::new("sentinel");
    for (i, config) in configs.iter().enumerate() {
        let data = STANDARD.encode(config);
        dir.write(
            &format!("secret-{i}.yaml"),
            &format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: s{i}, namespace: n}}\ntype: Opaque\ndata:\n  .dockerconfigjson: {data}\n"
            ),
        );
        dir.write(
            &format!("plain-{i}.yaml"),
            &format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: p{i}, namespace: n}}\ntype: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{config}'\n"
            ),
        );
    }
    let forbidden = [sentinel.to_owned(), auth.clone(), STANDARD.encode(sentinel)];
    let dir_arg = dir.path().to_str().unwrap();
    for args in [vec![dir_arg], vec!["--format", "json", dir_arg], vec!["--fix", dir_arg]] {
        let out = lint(&args, "");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = text(&out.stderr);
        let shown = if args[0] == "--fix" { stderr } else { format!("{}{stderr}", text(&out.stdout)) };
        assert!(shown.contains("RC00"), "{args:?}: {shown}");
        for value in &forbidden {
            assert!(!shown.contains(value.as_str()), "{args:?} printed a credential: {shown}");
        }
    }
}

#[test]
fn stdin_multi_document_json_and_yaml() {
    let json_pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"a"},
        "spec":{"containers":[{"name":"c","image":"registry.corp:5000/team/app:1"}]}}"#;
    let out = lint(&["--format", "json", "-"], json_pod);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(findings(&out), vec![("RC013".into(), "warning".into(), 2, "spec.containers[0].image".into())]);

    let clean = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: nginx:1.27}]\n";
    let out = lint(&["-"], &format!("---\n{clean}---\n{clean}"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(text(&out.stdout), "0 error(s), 0 warning(s)\n");
}

#[test]
fn legacy_dockercfg_secrets_cover_images_and_keep_their_format() {
    let legacy = r#"{"https://registry.corp:5000/v1/":{"username":"u","password":"p","email":"u@example.com"}}"#;
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: legacy}}\ntype: kubernetes.io/dockercfg\nstringData:\n  .dockercfg: '{legacy}'\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  imagePullSecrets: [{{name: legacy}}]\n  containers:\n  - {{name: a, image: registry.corp:5000/team/a:1}}\n  - {{name: b, image: registry.corp/team/b:1}}\n"
    );
    let out = lint(&["--format", "json", "-"], &yaml);
    assert_eq!(
        findings(&out),
        vec![
            ("RC003".into(), "warning".into(), 6, r#"stringData[".dockercfg"]"#.into()),
            ("RC012".into(), "warning".into(), 15, "spec.containers[1].image".into()),
        ],
        "the port-5000 key covers only the port-5000 image"
    );
    let fixed = lint(&["--fix", "-"], &yaml);
    let docs = documents(&fixed.stdout);
    assert_eq!(docs[0]["stringData"][".dockercfg"], legacy, "a legacy config is not rewritten into another format");
}

#[test]
fn invalid_images_and_registry_credentials_are_findings() {
    let yaml = "\
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers: [{name: c, image: Registry.Corp/App}]
---
apiVersion: regcred.dev/v1alpha1
kind: RegistryCredential
metadata: {name: r}
spec:
  source: {secretRef: {namespace: regcred-system, name: s}}
  registries: ['ftp://registry.corp']
";
    let out = lint(&["--format", "json", "-"], yaml);
    let codes: Vec<String> = findings(&out).into_iter().map(|f| f.0).collect();
    assert_eq!(codes, vec!["RC014", "RC020"]);
}

#[test]
fn unreadable_input_exits_2_after_linting_the_rest() {
    let dir = TempDir::new("unreadable");
    let broken = dir.write("broken.yaml", "kind: Pod\nspec: [1, 2\n");
    let out = lint(&[broken.to_str().unwrap(), &fixture("seed-article.yaml")], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("broken.yaml"), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("RC010"), "the readable file is still linted");

    let out = lint(&["/nonexistent/regcred/manifests"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read /nonexistent/regcred/manifests"));
}

#[test]
fn directories_are_searched_for_manifests_only() {
    let dir = TempDir::new("walk");
    dir.write("nested/deeper/pod.yml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  imagePullSecrets: [{name: gone}]\n  containers: [{name: c, image: nginx}]\n");
    dir.write("notes.txt", "kind: Pod\nnot: [yaml\n");
    let out = lint(&["--format", "json", dir.path().to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(findings(&out), vec![("RC010".into(), "error".into(), 5, "spec.imagePullSecrets[0].name".into())]);
}

#[test]
fn every_finding_code_is_documented_in_the_readme() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md")).unwrap();
    for code in Code::ALL {
        assert!(readme.contains(&format!("| `{}` |", code.id())), "README has no row for {}", code.id());
    }
}

/// Exit 2, and a reason on stderr that names the file and the limit.
fn assert_refused(out: &Output, file: &Path, reason: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit code (a signal is None); stderr: {stderr}");
    assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains(reason), "{stderr}");
}

#[test]
fn an_alias_bomb_is_refused_with_exit_2() {
    let dir = TempDir::new("alias-bomb");
    // 342 bytes: nine levels, each alias repeating the level before nine times (9^9 strings).
    let mut yaml = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for (previous, name) in "abcdefgh".chars().zip("bcdefghi".chars()) {
        let items = vec![format!("*{previous}"); 9].join(",");
        yaml.push_str(&format!("{name}: &{name} [{items}]\n"));
    }
    let bomb = dir.write("bomb.yaml", &yaml);
    let out = lint_file(&bomb);
    assert_refused(&out, &bomb, "anchors and aliases copy more than 100000 nodes");
}

#[test]
fn nesting_20000_deep_is_refused_with_exit_2_not_a_crash() {
    let dir = TempDir::new("deep");
    for (name, yaml) in [
        ("block.yaml", format!("{}x\n", "- ".repeat(20_000))),
        ("mapping.yaml", (0..2_000).map(|depth| format!("{}a:\n", " ".repeat(depth))).collect::<String>()),
        ("flow.yaml", format!("{}{}\n", "[".repeat(20_000), "]".repeat(20_000))),
    ] {
        let file = dir.write(name, &yaml);
        let out = lint_file(&file);
        assert_refused(&out, &file, "nesting deeper than 128 levels");
    }
}

#[test]
fn an_input_over_16_mib_is_refused_with_exit_2() {
    let dir = TempDir::new("large");
    let padding = format!("# {}\n", "x".repeat(1022));
    let yaml = format!("{}kind: Pod\nmetadata: {{name: p}}\n", padding.repeat(16 * 1024 + 1));
    let large = dir.write("large.yaml", &yaml);
    let out = lint_file(&large);
    assert_refused(&out, &large, "larger than 16 MiB");
    // Just under the limit, the same kind of file is read.
    let fits = dir.write("fits.yaml", &format!("{}kind: Pod\nmetadata: {{name: p}}\n", padding.repeat(1024)));
    assert_eq!(lint_file(&fits).status.code(), Some(0));
}

/// Runs `lint FILE` within 1 GiB and 60 s.
fn lint_file(file: &Path) -> Output {
    lint_bounded(&[file.to_str().unwrap()], 1024, std::time::Duration::from_secs(60))
}

/// Runs `lint ARGS...` with its address space capped at `memory_mib` and killed after
/// `deadline`: a reader whose memory grows with more than the input fails instead of paging.
fn lint_bounded(args: &[&str], memory_mib: u64, deadline: std::time::Duration) -> Output {
    use std::process::{Command, Stdio};
    let script = format!("ulimit -v {}; exec \"$0\" lint \"$@\"", memory_mib * 1024);
    let child = Command::new("sh")
        .args(["-c", &script, env!("CARGO_BIN_EXE_regcred-operator")])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Output is read while it runs (a finding may be larger than a pipe holds); a watchdog kills it.
    let pid = child.id().to_string();
    let (finished, finishing) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let overran = finishing.recv_timeout(deadline).is_err();
        if overran {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
        overran
    });
    let out = child.wait_with_output().unwrap();
    let _ = finished.send(());
    assert!(!watchdog.join().unwrap(), "lint {args:?} ran longer than {deadline:?}");
    out
}

#[test]
fn a_document_of_deeply_nested_long_keys_is_read_in_memory_of_its_size() {
    let dir = TempDir::new("nested-keys");
    // 64 levels of 16 KiB keys (1 MiB), then 20,000 leaves: a whole path kept per field would be
    // 20 GiB of copied keys.
    let key = |level: usize| format!("k{level}{}", "x".repeat(16 * 1024));
    let mut yaml: String = (0..64).map(|level| format!("{{{}: ", key(level))).collect();
    yaml.push('{');
    yaml.push_str(&(0..20_000).map(|leaf| format!("leaf{leaf}: 1")).collect::<Vec<_>>().join(", "));
    yaml.push_str(&"}".repeat(65));
    let file = dir.write("nested.yaml", &yaml);
    let out = lint_file(&file);
    assert_eq!(out.status.code(), Some(0), "read and linted within 1 GiB; stderr: {}", text(&out.stderr));
}

#[test]
fn a_long_string_aliased_many_times_is_refused_with_exit_2() {
    let dir = TempDir::new("alias-text");
    // One node of 1 MiB aliased 10,000 times: 10 GiB of copies from 1 MiB of input.
    let yaml = format!("a: &a {}\nb: [{}]\n", "x".repeat(1024 * 1024), vec!["*a"; 10_000].join(","));
    let file = dir.write("aliases.yaml", &yaml);
    let out = lint_file(&file);
    assert_refused(&out, &file, "anchors and aliases copy more than 16 MiB of text");
}

#[test]
fn anchors_nested_in_anchors_are_refused_with_exit_2_not_copied_at_each_level() {
    let dir = TempDir::new("nested-anchors");
    // 10 MiB of text in 120 anchored sequences, one inside the other, and no alias: kept once
    // per anchor, 1.2 GiB of copies.
    let opening: String = (0..120).map(|level| format!("&a{level} [")).collect();
    let yaml = format!("a: {opening}\"{}\"{}\n", "x".repeat(10 * 1024 * 1024), "]".repeat(120));
    let file = dir.write("anchors.yaml", &yaml);
    let out = lint_file(&file);
    assert_refused(&out, &file, "anchors and aliases copy more than 16 MiB of text");
}

#[test]
fn names_of_a_megabyte_are_compared_without_a_quadratic_edit_distance() {
    let dir = TempDir::new("long-names");
    let name = "a".repeat(1024 * 1024);
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}b, namespace: x}}\ntype: Opaque\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: x}}\n\
         spec: {{imagePullSecrets: [{{name: {name}c}}], containers: [{{name: c, image: nginx}}]}}\n"
    );
    let file = dir.write("names.yaml", &yaml);
    let out = lint_bounded(&["--format", "json", file.to_str().unwrap()], 1024, std::time::Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    assert!(findings(&out).iter().any(|(code, ..)| code == "RC010"), "the missing Secret is still reported");
}

#[test]
fn a_symlink_loop_in_a_directory_is_refused_with_exit_2_after_linting_the_rest() {
    let dir = TempDir::new("symlink-loop");
    dir.write("app/pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  imagePullSecrets: [{name: gone}]\n  containers: [{name: c, image: nginx}]\n");
    std::os::unix::fs::symlink("..", dir.path().join("app/back")).unwrap();
    let out =
        lint_bounded(&["--format", "json", dir.path().to_str().unwrap()], 1024, std::time::Duration::from_secs(60));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("app/back: refused: a symlink loop back to"), "{stderr}");
    assert_eq!(findings(&out).len(), 1, "the manifest is linted once: {}", text(&out.stdout));
}

#[test]
fn directories_reached_again_through_symlinks_are_walked_once() {
    let dir = TempDir::new("symlink-fan");
    // Each level links twice to the next: 2^30 paths to the last level, one directory each.
    for level in 0..30 {
        let here = dir.path().join(format!("d{level}"));
        std::fs::create_dir_all(&here).unwrap();
        for link in ["x", "y"] {
            std::os::unix::fs::symlink(format!("../d{}", level + 1), here.join(link)).unwrap();
        }
    }
    dir.write("d30/pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  imagePullSecrets: [{name: gone}]\n  containers: [{name: c, image: nginx}]\n");
    let root = dir.path().join("d0");
    let out = lint_bounded(&["--format", "json", root.to_str().unwrap()], 1024, std::time::Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(findings(&out).len(), 1, "the manifest is linted once");
}
