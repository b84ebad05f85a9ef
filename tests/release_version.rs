//! One version everywhere: Cargo.toml's is the release's, and every file that names the release
//! names that one (scripts/release.sh refuses to publish otherwise, this test says so first).

use std::path::Path;

use regcred_operator::cli::crd::{VERSION_ANNOTATION, crd_yaml};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The value of the top-level `key:` of a YAML file, unquoted.
fn top_level(yaml: &str, key: &str) -> Option<String> {
    yaml.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .map(|value| value.trim().trim_matches('"').to_owned())
}

/// Every version-looking word right after `marker` in `text`, with the line it is on.
fn versions_after<'a>(text: &'a str, marker: &str) -> Vec<(&'a str, String)> {
    text.lines()
        .flat_map(|line| {
            line.match_indices(marker).map(move |(at, _)| {
                let rest = &line[at + marker.len()..];
                let end =
                    rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-')).unwrap_or(rest.len());
                (line, rest[..end].to_owned())
            })
        })
        .filter(|(_, version)| version.starts_with(|c: char| c.is_ascii_digit()))
        .collect()
}

#[test]
fn the_chart_names_the_crate_version() {
    let chart = read("charts/regcred-operator/Chart.yaml");
    assert_eq!(top_level(&chart, "version").as_deref(), Some(VERSION), "Chart.yaml version");
    assert_eq!(top_level(&chart, "appVersion").as_deref(), Some(VERSION), "Chart.yaml appVersion");
}

#[test]
fn the_crd_annotation_names_the_crate_version() {
    let generated: serde_json::Value = serde_norway::from_str(&crd_yaml()).expect("the CRD is YAML");
    assert_eq!(generated["metadata"]["annotations"][VERSION_ANNOTATION], VERSION);
    for committed in [
        "crds/registrycredentials.regcred.dev.yaml",
        "charts/regcred-operator/crds/registrycredentials.regcred.dev.yaml",
    ] {
        let crd: serde_json::Value = serde_norway::from_str(&read(committed)).expect("the CRD is YAML");
        assert_eq!(crd["metadata"]["annotations"][VERSION_ANNOTATION], VERSION, "{committed}");
    }
}

#[test]
fn image_tags_and_install_commands_name_the_crate_version() {
    let files = ["config/manager/deployment.yaml", "README.md", "docs/operations.md", "docs/compatibility.md"];
    let markers = ["ghcr.io/regcred/regcred-operator:", "newTag: ", "--version "];
    let mut seen = 0;
    for file in files {
        let text = read(file);
        for marker in markers {
            for (line, version) in versions_after(&text, marker) {
                assert_eq!(version, VERSION, "{file}: `{}`", line.trim());
                seen += 1;
            }
        }
    }
    // The manifest's image and the documented installs at least: the test cannot pass on nothing.
    assert!(seen >= 3, "only {seen} versioned references found in {files:?}");
}

#[test]
fn the_changelog_has_a_section_for_the_crate_version() {
    let changelog = read("CHANGELOG.md");
    let heading = format!("## [{VERSION}]");
    let first = changelog.lines().find(|line| line.starts_with("## [")).expect("CHANGELOG.md has versions");
    assert_eq!(first, heading, "the newest section of CHANGELOG.md");
}

#[test]
fn the_version_readers_find_what_they_look_for() {
    assert_eq!(top_level("name: a\nversion: \"1.2.3\"\n", "version").as_deref(), Some("1.2.3"));
    assert_eq!(top_level("  version: 1\n", "version"), None);
    let found = versions_after("x ghcr.io/regcred/regcred-operator:1.0.0-rc.1, --version 2.0.0\n", "--version ");
    assert_eq!(found.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(), ["2.0.0"]);
    assert_eq!(versions_after("image: r/regcred-operator:1.0.0-rc.1)", "regcred-operator:")[0].1, "1.0.0-rc.1");
}
