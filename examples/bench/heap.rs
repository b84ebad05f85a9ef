//! The heap at its peak, by the operator's own code: heaptrack's stacks (`heaptrack_print
//! --flamegraph-cost-type peak -F`, one `frame (file);frame (file);... bytes` line per stack,
//! outermost first) summed by the innermost frame of this crate, the function that asked for the
//! memory or the nearest one that did on its behalf.
//!
//! A frame names a function and a file's base name, and dependencies have files of the same
//! names (tokio's `context.rs`, `queue.rs`): a named frame is ours when that file of ours defines
//! the function, a closure or async block when it is in a file of ours called from a frame of ours.
//! `mod.rs`, `lib.rs` and `main.rs` are everyone's: their frames are never counted as ours.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// File names too common to tell whose a frame is.
const AMBIGUOUS: [&str; 3] = ["mod.rs", "lib.rs", "main.rs"];

/// The sources of this crate under `src`, by file name (files of the same name together).
fn own_sources(src: &Path) -> HashMap<String, String> {
    let mut sources: HashMap<String, String> = HashMap::new();
    let mut dirs = vec![src.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                dirs.push(path);
            } else if name.ends_with(".rs") && !AMBIGUOUS.contains(&name.as_str()) {
                sources.entry(name).or_default().push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    sources
}

/// The frame a stack's bytes are charged to: the innermost named function of ours (closures and
/// async blocks are charged to the function around them), else the innermost frame of ours.
fn charged_frame<'a>(frames: &[&'a str], own: &HashMap<String, String>) -> Option<&'a str> {
    let source = |frame: &str| {
        let (_, file) = frame.rsplit_once(" (")?;
        own.get(file.trim_end_matches(')'))
    };
    let defines = |frame: &str| {
        let name: String = frame.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let defined = |text: &String| ["(", "<"].iter().any(|next| text.contains(&format!("fn {name}{next}")));
        source(frame).is_some_and(|text| !name.is_empty() && defined(text))
    };
    // Outermost first: a closure is ours when what called it was.
    let mut ours = Vec::with_capacity(frames.len());
    for (i, frame) in frames.iter().enumerate() {
        let caller_ours = i > 0 && ours[i - 1];
        ours.push(if frame.starts_with('{') { caller_ours && source(frame).is_some() } else { defines(frame) });
    }
    let innermost = frames.iter().zip(&ours).rev().filter(|(_, ours)| **ours).map(|(frame, _)| *frame);
    let first = innermost.clone().next();
    innermost.clone().find(|frame| !frame.starts_with('{')).or(first)
}

/// A Markdown table of the bytes held at the peak, by the frame charged, the largest first.
pub(crate) fn summary(stacks: &str, src: &Path, rows: usize) -> String {
    let own = own_sources(src);
    let mut charged: HashMap<&str, u64> = HashMap::new();
    let mut total = 0;
    for line in stacks.lines() {
        let Some((stack, bytes)) = line.trim_end().rsplit_once(' ') else { continue };
        let Ok(bytes) = bytes.parse::<u64>() else { continue };
        total += bytes;
        let frames: Vec<&str> = stack.trim_end_matches(';').split(';').collect();
        *charged.entry(charged_frame(&frames, &own).unwrap_or("(outside the operator's code)")).or_default() += bytes;
    }
    let by_size: BTreeMap<(std::cmp::Reverse<u64>, &str), ()> =
        charged.into_iter().map(|(frame, bytes)| ((std::cmp::Reverse(bytes), frame), ())).collect();
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let mut table = format!(
        "Heap at its peak: {:.1} MiB, by the innermost function of the operator's own code on each stack.\n\n\
         | MiB | share | charged to |\n|---|---|---|\n",
        mib(total)
    );
    for ((std::cmp::Reverse(bytes), frame), ()) in by_size.into_iter().take(rows) {
        let share = 100.0 * bytes as f64 / total.max(1) as f64;
        table.push_str(&format!("| {:.2} | {share:.1}% | `{frame}` |\n", mib(bytes)));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_go_to_the_innermost_named_function_of_ours() {
        let own: HashMap<String, String> = [
            ("cache.rs".to_owned(), "fn remember() {}".to_owned()),
            ("write.rs".to_owned(), "async fn sync() {}".to_owned()),
            ("context.rs".to_owned(), "fn resolve() {}".to_owned()),
        ]
        .into();
        let stack = [
            "run (worker.rs)",
            "sync (write.rs)",
            "remember<> (cache.rs)",
            "{closure#0} (cache.rs)",
            "grow (raw_vec.rs)",
        ];
        assert_eq!(charged_frame(&stack, &own), Some("remember<> (cache.rs)"));
        let unnamed = ["run (worker.rs)", "sync (write.rs)", "{async_fn#0} (write.rs)", "alloc (alloc.rs)"];
        assert_eq!(charged_frame(&unnamed, &own), Some("sync (write.rs)"));
        // tokio's context.rs is not ours, nor a closure it calls.
        let foreign = ["set_scheduler<> (context.rs)", "{closure#0} (context.rs)", "alloc (alloc.rs)"];
        assert_eq!(charged_frame(&foreign, &own), None);
    }
}
