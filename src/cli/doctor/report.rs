//! The report `doctor` prints, and the wording of the commands its causes suggest. Only names,
//! types and registry hosts appear: never Secret data.

use std::io::Write;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::credentials::{Injection, injection, selecting_credentials};
use super::evidence::{Admission, Cause, Context, Diagnosis, Evidence, ImageCheck, PodEvent, SecretLookup, one_line};
use crate::crd::selection::{POD_INJECTION_DISABLED, POD_INJECTION_LABEL};
use crate::credential::pull_secret::DOCKER_CONFIG_JSON_KEY;

/// What was read, section by section, then the causes, most likely first.
pub(super) fn print_report(evidence: &Evidence, diagnosis: &Diagnosis, unchecked: &[String], out: &mut dyn Write) {
    let context = Context::new(evidence);
    print_pod(&context, out);
    print_images(&diagnosis.images, out);
    print_pull_secrets(&context, out);
    print_injection(&context, out);
    print_events(&evidence.events, out);
    print_unchecked(unchecked, out);
    print_causes(&diagnosis.causes, out);
}

fn print_pod(context: &Context, out: &mut dyn Write) {
    let pod = &context.evidence.pod;
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Unknown".to_owned());
    let _ = writeln!(out, "Pod {}/{}: {phase}, ServiceAccount {}", context.namespace, pod.name_any(), context.account);
}

fn print_images(images: &[ImageCheck], out: &mut dyn Write) {
    let _ = writeln!(out, "\nImages:");
    for check in images {
        let verdict = match (&check.registry, &check.covered_by) {
            (Err(error), _) => format!("invalid reference: {error}"),
            (Ok(registry), Some((secret, key))) => format!("registry {registry}, covered by {secret:?} (key {key:?})"),
            (Ok(registry), None) => format!("registry {registry}, no pull secret of the Pod covers it"),
        };
        let _ = writeln!(out, "  {}: {} ({verdict})", check.container, check.image);
    }
}

fn print_pull_secrets(context: &Context, out: &mut dyn Write) {
    let (evidence, account) = (context.evidence, &context.account);
    let _ = writeln!(out, "\nPull secrets:");
    let sa_secrets = evidence.service_account_pull_secrets();
    for (owner, names) in [("Pod spec", &context.pod_secrets), (&*format!("ServiceAccount {account}"), &sa_secrets)] {
        let shown: Vec<String> =
            names.iter().map(|name| format!("{name} ({})", describe(evidence.secrets.get(name)))).collect();
        let listed = if shown.is_empty() { "none".to_owned() } else { shown.join(", ") };
        let _ = writeln!(out, "  {owner}: {listed}");
    }
    if evidence.service_account.is_none() {
        let _ = writeln!(out, "  (ServiceAccount {account} not found)");
    }
}

fn print_injection(context: &Context, out: &mut dyn Write) {
    let _ = writeln!(out, "\nAdmission injection:");
    for line in injection_coverage(context) {
        let _ = writeln!(out, "  {line}");
    }
}

fn print_events(events: &[PodEvent], out: &mut dyn Write) {
    let _ = writeln!(out, "\nEvents:");
    if events.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for event in events {
        let kind = if event.warning { "Warning" } else { "Normal" };
        let (reason, message) = (one_line(&event.reason), one_line(&event.message));
        let _ = writeln!(out, "  {kind} {reason} (x{}): {message}", event.count);
    }
}

fn print_unchecked(unchecked: &[String], out: &mut dyn Write) {
    if !unchecked.is_empty() {
        let _ = writeln!(out, "\nNot checked (could not read):");
        for what in unchecked {
            let _ = writeln!(out, "  {what}");
        }
    }
}

fn print_causes(causes: &[Cause], out: &mut dyn Write) {
    let _ = writeln!(out);
    if causes.is_empty() {
        let _ = writeln!(out, "Diagnosis: no pull-secret problem found.");
        return;
    }
    let _ = writeln!(out, "Diagnosis, most likely first:");
    for (i, cause) in causes.iter().enumerate() {
        let _ = writeln!(out, "{}. {}", i + 1, cause.summary);
        for detail in &cause.details {
            let _ = writeln!(out, "   - {detail}");
        }
        for command in &cause.commands {
            let _ = writeln!(out, "   $ {command}");
        }
    }
}

/// A Secret by type and state; never its data.
fn describe(lookup: Option<&SecretLookup>) -> String {
    match lookup {
        Some(SecretLookup::Found { secret_type, data, .. }) => {
            let keys: Vec<&str> = data.keys().map(String::as_str).collect();
            format!("type {}, keys {keys:?}", secret_type.as_deref().unwrap_or("Opaque"))
        }
        Some(SecretLookup::Missing) => "missing".to_owned(),
        Some(SecretLookup::Unreadable(reason)) => format!("unreadable: {reason}"),
        None => "not read".to_owned(),
    }
}

/// What the report says about admission injection for the Pod's namespace and ServiceAccount.
pub(super) fn injection_coverage(context: &Context) -> Vec<String> {
    let (evidence, namespace, account) = (context.evidence, &context.namespace, &context.account);
    let mut lines = vec![match &evidence.admission {
        Admission::Active { policy } => format!(
            "MutatingAdmissionPolicy {policy} is installed and bound: a Pod created now gets the copy of each RegistryCredential that selects it"
        ),
        Admission::Unbound { policy } => {
            format!("MutatingAdmissionPolicy {policy} is installed but no binding uses it: it injects nothing")
        }
        Admission::NotInstalled => "no MutatingAdmissionPolicy for RegistryCredentials is installed: only ServiceAccount patching applies, and only to Pods that list no pull secrets".to_owned(),
        Admission::NotServed => "the cluster serves no MutatingAdmissionPolicy API (admissionregistration.k8s.io/v1 on Kubernetes 1.36+, v1beta1 where 1.34 / 1.35 enable it): only ServiceAccount patching applies".to_owned(),
        Admission::Unknown(reason) => format!("whether the admission policy is installed is unknown: {reason}"),
        Admission::NotRead => "the admission policy was not checked".to_owned(),
    }];
    let selecting = selecting_credentials(context);
    if selecting.is_empty() {
        lines.push(format!("no RegistryCredential selects namespace {namespace} and ServiceAccount {account}"));
    }
    for credential in selecting {
        let secret = &credential.spec.secret_name;
        let state = match injection(credential, evidence) {
            Injection::Active => format!("injects Secret {secret:?} into Pods created here"),
            Injection::OptedOut => format!("spec.injectIntoPods is false: Secret {secret:?} is not injected"),
            Injection::NamespaceOptedOut => {
                format!(
                    "namespace {namespace} is labelled {POD_INJECTION_LABEL}={POD_INJECTION_DISABLED}: Secret {secret:?} is not injected"
                )
            }
            Injection::Deleting => "it is being deleted: injects nothing".to_owned(),
            Injection::PolicyInactive => format!("would inject Secret {secret:?}, but the policy is not active"),
        };
        lines.push(format!(
            "RegistryCredential {} selects namespace {namespace} and ServiceAccount {account}: {state}",
            credential.name_any()
        ));
    }
    lines
}

/// The commands that create the Pod again, so that admission gives it what it lacks.
pub(super) fn recreate_commands(context: &Context) -> Vec<String> {
    let (pod, namespace) = (context.evidence.pod.name_any(), &context.namespace);
    let Some(owner) = controller_of(&context.evidence.pod) else {
        return vec![format!(
            "kubectl delete pod {pod} -n {namespace} && kubectl apply -f <its manifest>   # a bare Pod: nothing creates it again"
        )];
    };
    let mut commands =
        vec![format!("kubectl delete pod {pod} -n {namespace}   # {} {} creates it again", owner.0, owner.1)];
    if let Some((kind, name)) = restartable(context, &owner) {
        commands.push(format!(
            "kubectl rollout restart {kind}/{name} -n {namespace}   # every Pod of it, when they all predate the fix"
        ));
    }
    commands
}

/// A JSON patch that appends the pull secrets to the template of the workload that creates the Pod.
pub(super) fn add_to_template_commands(context: &Context, names: &[String]) -> Vec<String> {
    let Some(owner) = controller_of(&context.evidence.pod) else {
        return vec![format!(
            "kubectl delete pod {} -n {} && kubectl apply -f <its manifest>   # after adding {names:?} to its imagePullSecrets",
            context.evidence.pod.name_any(),
            context.namespace
        )];
    };
    let Some((kind, name)) = restartable(context, &owner) else { return Vec::new() };
    let patch: Vec<serde_json::Value> = names
        .iter()
        .map(|n| serde_json::json!({"op": "add", "path": "/spec/template/spec/imagePullSecrets/-", "value": {"name": n}}))
        .collect();
    let patch = shell_word(&serde_json::Value::from(patch).to_string());
    vec![format!("kubectl patch {kind} {name} -n {} --type=json -p {patch}", context.namespace)]
}

/// `(kind, name)` of the Pod's controller.
fn controller_of(pod: &Pod) -> Option<(String, String)> {
    let owners = pod.owner_references();
    let owner = owners.iter().find(|o| o.controller == Some(true)).or(owners.first())?;
    Some((owner.kind.clone(), owner.name.clone()))
}

/// The workload whose template makes the Pod and that `kubectl rollout restart` knows, lower case.
fn restartable(context: &Context, owner: &(String, String)) -> Option<(String, String)> {
    match (&context.evidence.workload, owner.0.as_str()) {
        (Some((kind, name)), _) if kind == "Deployment" => Some(("deployment".to_owned(), name.clone())),
        (_, "StatefulSet" | "DaemonSet") => Some((owner.0.to_ascii_lowercase(), owner.1.clone())),
        _ => None,
    }
}

/// `value` as one shell word: as it is when it holds nothing a shell reads, else single-quoted.
/// Whatever a tenant wrote (a pull secret's name in a Pod, an image in an Event) is data in a
/// suggested command, never more of the command.
pub(super) fn shell_word(value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !value.is_empty() && value.chars().all(plain) {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// How many RegistryCredentials or namespaces a detail lists before it says how many more.
pub(super) const SHOWN: usize = 3;

/// `a, b, c and 4 more`.
pub(super) fn listed(items: &[&str]) -> String {
    let mut shown = items.iter().take(SHOWN).copied().collect::<Vec<_>>().join(", ");
    if items.len() > SHOWN {
        shown.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    shown
}

/// Checks a Secret's docker config without showing it: `normalize` prints the problems on stderr
/// and the config, credentials included, on stdout, which goes nowhere.
pub(super) fn check_secret_command(name: &str, namespace: &str, data_key: &str) -> String {
    format!(
        "kubectl get secret {name} -n {namespace} -o jsonpath='{{.data.\\{data_key}}}' | base64 -d | regcred-operator normalize >/dev/null   # problems on stderr; credentials not shown"
    )
}

/// Checks a Secret's docker config, then copies it under the wanted name and namespace.
pub(super) fn copy_secret(from_namespace: &str, from: &str, to_namespace: &str, to: &str) -> [String; 2] {
    [
        format!("{}; check it first", check_secret_command(from, from_namespace, DOCKER_CONFIG_JSON_KEY)),
        format!(
            "kubectl get secret {from} -n {from_namespace} -o json | jq '.metadata |= {{name: \"{to}\", namespace: \"{to_namespace}\"}}' | kubectl apply -f -"
        ),
    ]
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::doctor::credentials::why_not_selected;

    #[test]
    fn a_value_in_a_command_is_one_shell_word() {
        assert_eq!(shell_word("registry.k8s.io/pause:3.10"), "registry.k8s.io/pause:3.10");
        assert_eq!(shell_word("x && curl evil | sh"), "'x && curl evil | sh'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word("$(id)`id`"), "'$(id)`id`'");
        assert_eq!(shell_word(""), "''");
    }
    use crate::cli::doctor::evidence::Admission;
    use crate::cli::doctor::fixture::{credential, own_list_evidence};

    #[test]
    fn injection_coverage_of_the_pods_namespace_and_service_account() {
        let mut evidence = own_list_evidence();
        evidence.admission = Admission::Active { policy: "regcred-operator-inject-pull-secret".into() };
        evidence.credentials = vec![credential(&["*"], &[], None), credential(&["other"], &[], None)];
        let lines = injection_coverage(&Context::new(&evidence));
        assert!(
            lines[0].starts_with("MutatingAdmissionPolicy regcred-operator-inject-pull-secret is installed and bound")
        );
        assert_eq!(
            lines[1..],
            [
                "RegistryCredential corp selects namespace shop and ServiceAccount default: injects Secret \"regcred\" into Pods created here"
            ]
        );

        evidence.credentials[0].spec.inject_into_pods = false;
        let lines = injection_coverage(&Context::new(&evidence));
        assert!(lines[1].ends_with("spec.injectIntoPods is false: Secret \"regcred\" is not injected"), "{lines:?}");

        evidence.credentials[0].spec.inject_into_pods = true;
        evidence.admission = Admission::NotServed;
        let lines = injection_coverage(&Context::new(&evidence));
        assert!(lines[0].contains("serves no MutatingAdmissionPolicy API"));
        assert!(lines[1].ends_with("would inject Secret \"regcred\", but the policy is not active"), "{lines:?}");

        evidence.credentials = vec![credential(&["other"], &[], None)];
        let lines = injection_coverage(&Context::new(&evidence));
        assert_eq!(lines[1], "no RegistryCredential selects namespace shop and ServiceAccount default");

        // The namespace of the sources is selected by name only, as the controller and the policy do.
        evidence.credentials = vec![credential(&["*"], &[], None)];
        evidence.pod.metadata.namespace = Some("regcred-system".into());
        let lines = injection_coverage(&Context::new(&evidence));
        assert_eq!(lines[1], "no RegistryCredential selects namespace regcred-system and ServiceAccount default");
        assert_eq!(
            why_not_selected(&evidence.credentials[0], "regcred-system", None, &evidence.reserved_namespaces())
                .as_deref(),
            Some("regcred-system holds credential sources, selected only by an exact include entry")
        );
    }
}
