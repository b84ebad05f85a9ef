//! One run of a credential provider plugin: the request on stdin, the response from stdout, with
//! a deadline, bounded output and an environment of the config's making. What the plugin prints on
//! stderr may hold a credential: only its length is kept.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::config::Provider;

/// The most a plugin may write on stdout; a response is a few kilobytes.
pub const MAX_STDOUT: usize = 1 << 20;

/// Why a run gave no response.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RunProblem {
    #[error("plugin {plugin} not found in the plugin directory")]
    NotFound { plugin: String },
    #[error("plugin {plugin} could not be started: {kind}")]
    NotStarted { plugin: String, kind: String },
    #[error("plugin {plugin} gave no answer within {seconds} s and was killed")]
    TimedOut { plugin: String, seconds: u64 },
    #[error("plugin {plugin} {exit} (stderr: {stderr_bytes} bytes, not shown)")]
    Failed { plugin: String, exit: String, stderr_bytes: usize },
    #[error("plugin {plugin} wrote more than {MAX_STDOUT} bytes on stdout and was killed")]
    OutputTooLarge { plugin: String },
}

/// Runs `provider`'s plugin with `request` on stdin; its stdout when it exits 0.
pub async fn run(provider: &Provider, request: &[u8], timeout: std::time::Duration) -> Result<Vec<u8>, RunProblem> {
    let plugin = provider.name.clone();
    if !provider.plugin.is_file() {
        return Err(RunProblem::NotFound { plugin });
    }
    let mut command = Command::new(&provider.plugin);
    command
        .args(&provider.args)
        .env_clear()
        .envs(&provider.env)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a deadline kills whatever the plugin started too.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|error| RunProblem::NotStarted { plugin: plugin.clone(), kind: error.kind().to_string() })?;
    let group = child.id();
    let outcome = tokio::time::timeout(timeout, converse(&mut child, request)).await;
    let result = match outcome {
        Err(_) => Err(RunProblem::TimedOut { plugin, seconds: timeout.as_secs() }),
        Ok(Err(Conversation::TooLarge)) => Err(RunProblem::OutputTooLarge { plugin }),
        Ok(Err(Conversation::Io(kind))) => Err(RunProblem::NotStarted { plugin, kind: kind.to_string() }),
        Ok(Ok((status, _, stderr_bytes))) if !status.success() => {
            let exit = match (status.code(), status.signal()) {
                (Some(code), _) => format!("exited with status {code}"),
                (None, Some(signal)) => format!("was killed by signal {signal}"),
                (None, None) => "ended abnormally".to_owned(),
            };
            Err(RunProblem::Failed { plugin, exit, stderr_bytes })
        }
        Ok(Ok((_, stdout, _))) => Ok(stdout),
    };
    // Whatever the plugin left running (a helper it started, a child that held the pipes) ends
    // with the run, however the run ended.
    kill_group(group);
    result
}

enum Conversation {
    TooLarge,
    Io(io::ErrorKind),
}

/// Writes the request, reads stdout (bounded) and counts stderr, then waits for the exit.
async fn converse(
    child: &mut Child,
    request: &[u8],
) -> Result<(std::process::ExitStatus, Vec<u8>, usize), Conversation> {
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let write = async move {
        // A plugin that exits without reading its stdin closes the pipe: not an error of ours.
        let _ = stdin.write_all(request).await;
        drop(stdin);
    };
    let (_, stdout, stderr_bytes) = tokio::join!(write, read_bounded(stdout), count(stderr));
    let stdout = stdout?;
    let status = child.wait().await.map_err(|error| Conversation::Io(error.kind()))?;
    Ok((status, stdout, stderr_bytes))
}

async fn read_bounded(stream: impl AsyncRead + Unpin) -> Result<Vec<u8>, Conversation> {
    let mut buffer = Vec::new();
    stream
        .take(MAX_STDOUT as u64 + 1)
        .read_to_end(&mut buffer)
        .await
        .map_err(|error| Conversation::Io(error.kind()))?;
    if buffer.len() > MAX_STDOUT {
        return Err(Conversation::TooLarge);
    }
    Ok(buffer)
}

/// Reads a stream to its end and keeps only how long it was.
async fn count(mut stream: impl AsyncRead + Unpin) -> usize {
    let mut chunk = [0u8; 4096];
    let mut total = 0usize;
    while let Ok(read) = stream.read(&mut chunk).await {
        if read == 0 {
            break;
        }
        total = total.saturating_add(read);
    }
    total
}

fn kill_group(group: Option<u32>) {
    if let Some(group) = group.and_then(|id| i32::try_from(id).ok()) {
        // SAFETY: kill(2) with a negative pid signals the process group the plugin leads; it
        // touches no memory of ours.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use super::*;

    /// A provider whose plugin is the shell `script`, in a directory of its own.
    fn plugin(name: &str, script: &str) -> Provider {
        let dir = std::env::temp_dir().join(format!("regcred-plugins-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Provider {
            name: name.into(),
            plugin: path,
            match_images: vec!["*".into()],
            default_cache_duration: Duration::from_secs(60),
            args: vec!["--flag".into(), "value with spaces".into()],
            env: BTreeMap::from([("PATH".into(), "/usr/bin:/bin".into()), ("GIVEN".into(), "yes".into())]),
            token_attributes: None,
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn the_plugin_reads_the_request_and_sees_only_its_config_args_and_env() {
        // HOME is set here; the plugin must not see it.
        assert!(std::env::var_os("HOME").is_some(), "the test needs a variable of its own to withhold");
        let provider = plugin("echo", r#"printf '%s|%s|%s|%s|' "$#" "$2" "$GIVEN" "${HOME:-unset}"; cat"#);
        let stdout = run(&provider, b"REQUEST", 5 * SECOND).await.unwrap();
        assert_eq!(String::from_utf8(stdout).unwrap(), "2|value with spaces|yes|unset|REQUEST");
    }

    #[tokio::test]
    async fn a_missing_plugin_is_not_found() {
        let mut provider = plugin("present", "true");
        provider.plugin = PathBuf::from("/nonexistent/plugin");
        assert_eq!(run(&provider, b"", SECOND).await, Err(RunProblem::NotFound { plugin: "present".into() }));
    }

    #[tokio::test]
    async fn a_failing_plugin_is_reported_with_the_length_of_its_stderr_never_its_text() {
        let provider = plugin("fails", "echo 'token=hunter2-sentinel' >&2; exit 3");
        let problem = run(&provider, b"", 5 * SECOND).await.unwrap_err();
        assert_eq!(
            problem,
            RunProblem::Failed { plugin: "fails".into(), exit: "exited with status 3".into(), stderr_bytes: 23 }
        );
        assert!(!problem.to_string().contains("hunter2"), "{problem}");
    }

    #[tokio::test]
    async fn a_hanging_plugin_and_what_it_started_are_killed_at_the_deadline() {
        let marker = std::env::temp_dir().join(format!("regcred-hang-{}", std::process::id()));
        let script = format!("(sleep 3; touch {}) & sleep 30", marker.display());
        let provider = plugin("hangs", &script);
        let started = Instant::now();
        let problem = run(&provider, b"", SECOND).await.unwrap_err();
        assert_eq!(problem, RunProblem::TimedOut { plugin: "hangs".into(), seconds: 1 });
        assert!(started.elapsed() < 3 * SECOND, "{:?}", started.elapsed());
        tokio::time::sleep(3 * SECOND).await;
        assert!(!marker.exists(), "the plugin's child outlived the deadline");
    }

    #[tokio::test]
    async fn output_over_the_bound_is_refused_and_the_plugin_killed() {
        let provider = plugin("floods", "yes 0123456789abcdef");
        assert_eq!(run(&provider, b"", 10 * SECOND).await, Err(RunProblem::OutputTooLarge { plugin: "floods".into() }));
    }
}
