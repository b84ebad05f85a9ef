//! The heap at its peak, by the operator's own code: heaptrack's stacks (`heaptrack_print
//! --flamegraph-cost-type peak -F`, one `frame (file);frame (file);... bytes` line per stack)
//! summed by the innermost frame in this crate's sources, the function that asked for the memory
//! or the nearest one that did on its behalf.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// Source file names shared with dependencies: a frame there cannot be told to be ours.
const AMBIGUOUS: [&str; 3] = ["mod.rs", "lib.rs", "main.rs"];

/// The names of this crate's source files under `src`, those no dependency shares.
fn own_files(src: &Path) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    let mut dirs = vec![src.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                dirs.push(path);
            } else if name.ends_with(".rs") && !AMBIGUOUS.contains(&name.as_str()) {
                files.insert(name);
            }
        }
    }
    files
}

/// The frame a stack's bytes are charged to: the innermost named function of ours (closures and
/// async blocks are charged to the function around them), else the innermost frame of ours.
fn charged_frame<'a>(frames: &[&'a str], own: &BTreeSet<String>) -> Option<&'a str> {
    let ours = |frame: &str| frame.rsplit_once(" (").is_some_and(|(_, file)| own.contains(file.trim_end_matches(')')));
    let mut innermost = frames.iter().rev().copied().filter(|frame| ours(frame));
    let first = innermost.clone().next();
    innermost.find(|frame| !frame.starts_with('{')).or(first)
}

/// A Markdown table of the bytes held at the peak, by the frame charged, the largest first.
pub(crate) fn summary(stacks: &str, src: &Path, rows: usize) -> String {
    let own = own_files(src);
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
        let own: BTreeSet<String> = ["cache.rs", "write.rs"].map(String::from).into();
        let stack = [
            "run (worker.rs)",
            "sync (write.rs)",
            "remember (cache.rs)",
            "{closure#0} (cache.rs)",
            "grow (raw_vec.rs)",
        ];
        assert_eq!(charged_frame(&stack, &own), Some("remember (cache.rs)"));
        let unnamed = ["run (worker.rs)", "{async_fn#0} (write.rs)", "alloc (alloc.rs)"];
        assert_eq!(charged_frame(&unnamed, &own), Some("{async_fn#0} (write.rs)"));
        assert_eq!(charged_frame(&["run (worker.rs)", "alloc (alloc.rs)"], &own), None);
    }
}
