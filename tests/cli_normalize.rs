//! `regcred-operator normalize` as scripts use it: stdin or FILE, stdout, stderr, exit code.

use std::process::Output;

fn normalize(args: &[&str], stdin: &str) -> Output {
    regcred_test_support::cli::run_cli("normalize", args, stdin)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn stdin_is_normalized_to_stdout() {
    let out =
        normalize(&[], r#"{"auths":{"https://registry.internal.corp/v2/":{"username":"ci","password":"hunter2"}}}"#);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "{\"auths\":{\"registry.internal.corp\":{\"auth\":\"Y2k6aHVudGVyMg==\",\"password\":\"hunter2\",\"username\":\"ci\"}}}\n"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains(r#""https://registry.internal.corp/v2/" -> "registry.internal.corp""#), "{stderr}");
    assert!(!stderr.contains("hunter2"));
}

#[test]
fn file_argument_is_read() {
    let dir = std::env::temp_dir().join(format!("regcred-normalize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.json");
    std::fs::write(&file, r#"{"quay.io/org":{"auth":"dTpw"}}"#).unwrap();
    let out = normalize(&[file.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(r#""quay.io/org":{"auth":"dTpw","password":"p","username":"u"}"#));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn every_reason_goes_to_stderr_with_exit_1() {
    let out =
        normalize(&["-"], r#"{"auths":{"a.io":{},"b.io":{"username":"u","password":"TopSecret","auth":"dTpw"}}}"#);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert!(stderr.contains(r#"entry "a.io": no credentials"#), "{stderr}");
    assert!(stderr.contains(r#"entry "b.io": `auth` disagrees with `password`"#), "{stderr}");
    assert!(!stderr.contains("TopSecret"), "{stderr}");
}

#[test]
fn warnings_go_to_stderr_and_output_still_succeeds() {
    let out = normalize(&[], r#"{"auths":{"*.example.com":{"username":"u","password":"p"}}}"#);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("warning: <stdin>: entry \"*.example.com\": wildcard host"));
}

#[test]
fn unreadable_file_is_exit_2() {
    let out = normalize(&["/nonexistent/regcred/config.json"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read /nonexistent/regcred/config.json"));
}

#[test]
fn a_token_written_into_a_key_never_reaches_the_output() {
    let token = "T0ken-7f3a";
    for key in [
        format!("https://ci:{token}@registry.internal.corp/v2/"),
        format!("registry.internal.corp/?access_token={token}"),
        format!("registry.internal.corp:{token}"),
    ] {
        let config = format!(r#"{{"auths":{{"{key}":{{"username":"ci","password":"pw"}}}}}}"#);
        let out = normalize(&[], &config);
        assert_eq!(out.status.code(), Some(1), "{key} is refused");
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(stderr.contains("***"), "the key is named, redacted: {stderr}");
        assert!(!stdout.contains(token) && !stderr.contains(token), "normalize showed a token from {key}");
        let manifest = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: regcred, namespace: a}}\ntype: kubernetes.io/dockerconfigjson\n\
             stringData:\n  .dockerconfigjson: '{config}'\n"
        );
        let lint = regcred_test_support::cli::run_cli("lint", &["--format", "json", "-"], &manifest);
        assert_eq!(lint.status.code(), Some(1));
        let output = format!("{}{}", text(&lint.stdout), text(&lint.stderr));
        assert!(!output.contains(token), "lint showed a token from {key}");
    }
}
