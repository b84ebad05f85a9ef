//! The shape of the crate. Between folders: CLI -> controller's entry point / CRD -> credential
//! core; a layer that reaches into one above it, or into another's internals, fails here. Inside
//! them: no module of `src/` imports, directly or through others, a module that imports it (a
//! type two modules share lives below both), no file is over 800 lines, no function over 70.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 800;
const MAX_FUNCTION_LINES: usize = 70;

/// Every `crate::...` path that a source file under `dir` names, with the file it is in.
fn crate_paths(dir: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for module in modules().into_iter().filter(|m| m.file.starts_with(src().join(dir))) {
        let text = std::fs::read_to_string(&module.file).unwrap();
        for (at, _) in text.match_indices("crate::") {
            let rest = &text[at + "crate::".len()..];
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
            found.push((module.file.display().to_string(), rest[..end].trim_end_matches(':').to_owned()));
        }
    }
    assert!(!found.is_empty() || dir == "credential", "no source read under src/{dir}");
    found
}

#[test]
fn the_cli_uses_only_the_controllers_entry_point() {
    let allowed = ["controller::{", "controller"];
    for (file, path) in crate_paths("cli") {
        if path.starts_with("controller") {
            // `use crate::controller::{Operator, Settings, Stores}` is the entry point; nothing deeper.
            assert!(allowed.contains(&path.as_str()), "{file} reaches into controller internals: crate::{path}");
        }
    }
}

#[test]
fn the_crd_and_the_credential_core_know_nothing_above_them() {
    for (file, path) in crate_paths("crd") {
        assert!(
            path.starts_with("crd") || path.starts_with("credential"),
            "{file}: the CRD type depends only on the credential core, not crate::{path}"
        );
    }
    for (file, path) in crate_paths("credential") {
        assert!(path.starts_with("credential"), "{file}: the credential core is pure, not crate::{path}");
    }
}

#[test]
fn the_credential_core_does_no_kubernetes_io() {
    for module in modules().into_iter().filter(|m| m.file.starts_with(src().join("credential"))) {
        let text = std::fs::read_to_string(&module.file).unwrap();
        for forbidden in ["use kube", "k8s_openapi", "tokio", "std::fs", "std::net"] {
            assert!(
                !text.contains(forbidden),
                "{}: the credential core is pure, but names {forbidden}",
                module.file.display()
            );
        }
    }
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = import_graph(&modules());
    let cycles: Vec<String> = strongly_connected(&graph)
        .into_iter()
        .filter(|component| component.len() > 1)
        .map(|component| shortest_cycle(&graph, &component).join(" -> "))
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles in src/ (give the type they share a module below both):\n{}",
        cycles.join("\n")
    );
}

#[test]
fn no_file_is_over_800_lines() {
    let long: Vec<String> = modules()
        .iter()
        .map(|m| (m.file.display().to_string(), std::fs::read_to_string(&m.file).unwrap().lines().count()))
        .filter(|(_, lines)| *lines > MAX_FILE_LINES)
        .map(|(file, lines)| format!("{file}: {lines} lines"))
        .collect();
    assert!(long.is_empty(), "files over {MAX_FILE_LINES} lines:\n{}", long.join("\n"));
}

#[test]
fn no_function_is_over_70_lines() {
    let mut long = Vec::new();
    for module in modules() {
        for (name, line, lines) in functions(&module.code) {
            if lines > MAX_FUNCTION_LINES {
                long.push(format!("{}:{line}: fn {name} is {lines} lines", module.file.display()));
            }
        }
    }
    assert!(long.is_empty(), "functions over {MAX_FUNCTION_LINES} lines:\n{}", long.join("\n"));
}

/// The reading of the source itself is checked on known text: a check that reads nothing passes.
#[test]
fn the_source_reader_sees_imports_functions_and_nothing_in_comments_or_strings() {
    let code = code_only(
        "use super::{a::X, b::{Y, Z as W}};\n// use crate::c;\nfn f() {\n    let s = \"} crate::d\";\n    e::g('}');\n}\n",
    );
    assert_eq!(expand_use_tree("super::{a::X, b::{Y, Z as W}}"), ["super::a::X", "super::b::Y", "super::b::Z"]);
    assert!(!code.contains("crate::c") && !code.contains("crate::d"), "{code}");
    assert_eq!(functions(&code), [("f".to_owned(), 3, 4)]);
    let mut tested = code_only("use a::b;\n#[cfg(test)]\nmod tests {\n    use crate::z;\n}\nfn g() {}\n");
    strip_test_items(&mut tested);
    assert!(!tested.contains("crate::z") && tested.contains("fn g"), "{tested}");
    let modules = ["", "m", "m::a", "m::b"].map(|path| Module::named(path, "")).to_vec();
    assert_eq!(resolve("m::a", "super::b::Y", &modules).as_deref(), Some("m::b"));
    assert_eq!(resolve("m::a", "super::Error", &modules).as_deref(), Some("m"));
    assert_eq!(resolve("m", "a::X", &modules).as_deref(), Some("m::a"));
    assert_eq!(resolve("m", "std::sync::Arc", &modules), None);
    let graph = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    let components = strongly_connected(&graph);
    assert_eq!(components, [vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]]);
    assert_eq!(shortest_cycle(&graph, &components[0]), ["a", "b", "c", "a"]);
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// One source file of the crate.
#[derive(Clone)]
struct Module {
    /// Its path in the crate (`controller::cache`; the crate root is empty).
    path: String,
    file: PathBuf,
    /// Its text with comments and literals blanked (line breaks kept), so that braces and paths
    /// are code.
    code: String,
}

impl Module {
    fn named(path: &str, code: &str) -> Module {
        Module { path: path.to_owned(), file: PathBuf::new(), code: code.to_owned() }
    }
}

fn modules() -> Vec<Module> {
    let mut modules = Vec::new();
    let mut pending = vec![src()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|entry| entry.unwrap().path()));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let relative = path.strip_prefix(src()).unwrap().with_extension("");
            let mut segments: Vec<String> =
                relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            if matches!(segments.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                segments.pop();
            }
            let code = code_only(&std::fs::read_to_string(&path).unwrap());
            modules.push(Module { path: segments.join("::"), file: path, code });
        }
    }
    assert!(modules.len() > 10, "src/ read: {} files", modules.len());
    modules
}

/// `text` with comments, string and character literals replaced by spaces, line breaks kept.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        let end = if rest.starts_with(&['/', '/']) {
            rest.iter().position(|&c| c == '\n').unwrap_or(rest.len())
        } else if rest.starts_with(&['/', '*']) {
            (2..rest.len()).find(|&j| rest[j - 2..j] == ['*', '/']).unwrap_or(rest.len())
        } else if let Some(hashes) = raw_string_start(rest) {
            let close: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            let open = hashes + 2;
            (open..rest.len()).find(|&j| rest[j..].starts_with(&close)).map_or(rest.len(), |j| j + close.len())
        } else if rest[0] == '"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != '"' {
                j += if rest[j] == '\\' { 2 } else { 1 };
            }
            j + 1
        } else if rest[0] == '\'' && (rest.get(2) == Some(&'\'') || rest.get(1) == Some(&'\\')) {
            // A character literal ('x', '\n', '\u{..}'), not a lifetime.
            rest.iter().skip(2).position(|&c| c == '\'').map_or(rest.len(), |j| j + 3)
        } else {
            out.push(rest[0]);
            i += 1;
            continue;
        };
        let end = end.min(rest.len());
        rest[..end].iter().for_each(|&c| blank(&mut out, c));
        i += end;
    }
    out
}

/// The number of `#` of a raw string literal starting here (`r"`, `r#"`, `br"`...).
fn raw_string_start(rest: &[char]) -> Option<usize> {
    let after_prefix = match rest {
        ['b', 'r', ..] => 2,
        ['r', ..] => 1,
        _ => return None,
    };
    let hashes = rest[after_prefix..].iter().take_while(|&&c| c == '#').count();
    (rest.get(after_prefix + hashes) == Some(&'"')).then_some(hashes)
}

/// Blanks each item marked `#[cfg(test)]`: what tests import is not the module's dependency.
fn strip_test_items(code: &mut String) {
    while let Some(at) = code.find("#[cfg(test)]") {
        let body = at + code[at..].find(['{', ';']).unwrap();
        let end = if code[body..].starts_with(';') { body + 1 } else { matching_brace(code, body) + 1 };
        let blanked: String = code[at..end].chars().map(|c| if c == '\n' { '\n' } else { ' ' }).collect();
        code.replace_range(at..end, &blanked);
    }
}

/// The byte index of the `}` that closes the `{` at `open`.
fn matching_brace(code: &str, open: usize) -> usize {
    let mut depth = 0;
    for (i, c) in code[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 1 => return open + i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    panic!("unbalanced braces in the source");
}

/// Each function with a body: its name, first line, and length in lines (signature to `}`).
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("fn ") {
        if code[..at].ends_with(is_identifier) {
            continue;
        }
        let name: String = code[at + 3..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let Some(body) = code[at..].find(['{', ';']).map(|i| at + i) else { continue };
        if name.is_empty() || code[body..].starts_with(';') {
            continue;
        }
        let first = code[..at].matches('\n').count() + 1;
        let last = code[..matching_brace(code, body)].matches('\n').count() + 1;
        found.push((name, first, last - first + 1));
    }
    found
}

fn is_identifier(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `a::{b, c::{d as e}}` as the paths it names: `a::b`, `a::c::d`.
fn expand_use_tree(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap().trim().to_owned()];
    };
    let (prefix, body) = (&tree[..open], &tree[open + 1..tree.rfind('}').unwrap()]);
    let mut parts = vec![String::new()];
    let mut depth = 0;
    for c in body.chars() {
        match c {
            ',' if depth == 0 => parts.push(String::new()),
            _ => {
                depth += i32::from(c == '{') - i32::from(c == '}');
                parts.last_mut().unwrap().push(c);
            }
        }
    }
    let parts = parts.iter().filter(|part| !part.trim().is_empty());
    parts.flat_map(|part| expand_use_tree(part).into_iter().map(|path| format!("{prefix}{path}"))).collect()
}

/// The module of the crate that `path`, written in module `from`, names: the deepest module along
/// it. `None` for paths outside the crate.
fn resolve(from: &str, path: &str, modules: &[Module]) -> Option<String> {
    let known = |segments: &[&str]| modules.iter().any(|m| m.path == segments.join("::"));
    let mut segments: Vec<&str> = path.split("::").map(str::trim).filter(|s| !s.is_empty()).collect();
    let mut base: Vec<&str> = from.split("::").filter(|s| !s.is_empty()).collect();
    match segments.first().copied()? {
        "crate" => {
            base.clear();
            segments.remove(0);
        }
        "self" => {
            segments.remove(0);
        }
        "super" => {
            while segments.first() == Some(&"super") {
                base.pop();
                segments.remove(0);
            }
        }
        first if known(&[base.as_slice(), &[first]].concat()) => {}
        _ => return None,
    }
    for segment in segments {
        let deeper = [base.as_slice(), &[segment]].concat();
        if !known(&deeper) {
            break;
        }
        base = deeper;
    }
    Some(base.join("::"))
}

/// For each module, the modules its non-test code imports or names.
fn import_graph(modules: &[Module]) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for module in modules {
        let mut code = module.code.clone();
        strip_test_items(&mut code);
        let mut paths = Vec::new();
        // `use` trees first, then blanked, so that a prefix such as `super::{` is not read again.
        let mut from = 0;
        while let Some(at) = code[from..].find("use ").map(|i| from + i) {
            from = at + 4;
            if code[..at].ends_with(is_identifier) {
                continue;
            }
            let end = at + code[at..].find(';').unwrap();
            paths.extend(expand_use_tree(&code[at + 4..end]));
            code.replace_range(at..end, &" ".repeat(end - at));
        }
        let children = modules.iter().filter_map(|m| {
            let name = m.path.strip_prefix(&module.path)?.trim_start_matches("::");
            (m.path != module.path && !name.contains("::")).then_some(name)
        });
        for root in ["crate", "super", "self"].into_iter().chain(children) {
            for (at, _) in code.match_indices(&format!("{root}::")) {
                if code[..at].ends_with(|c: char| is_identifier(c) || c == ':') {
                    continue;
                }
                let rest = &code[at..];
                let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
                paths.push(rest[..end].to_owned());
            }
        }
        let imported = paths.iter().filter_map(|path| resolve(&module.path, path, modules));
        let imported: BTreeSet<String> = imported.filter(|target| *target != module.path).collect();
        graph.insert(module.path.clone(), imported);
    }
    graph
}

/// Tarjan's strongly connected components, each sorted.
fn strongly_connected(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    #[derive(Default)]
    struct Search<'g> {
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        components: Vec<Vec<String>>,
    }
    fn visit<'g>(node: &'g str, graph: &'g BTreeMap<String, BTreeSet<String>>, search: &mut Search<'g>) {
        let index = search.index.len();
        search.index.insert(node, index);
        search.low.insert(node, index);
        search.stack.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if !search.index.contains_key(next.as_str()) {
                visit(next, graph, search);
                search.low.insert(node, search.low[node].min(search.low[next.as_str()]));
            } else if search.stack.contains(&next.as_str()) {
                search.low.insert(node, search.low[node].min(search.index[next.as_str()]));
            }
        }
        if search.low[node] == index {
            let at = search.stack.iter().rposition(|&n| n == node).unwrap();
            let mut component: Vec<String> = search.stack.drain(at..).map(str::to_owned).collect();
            component.sort();
            search.components.push(component);
        }
    }
    let mut search = Search::default();
    for node in graph.keys() {
        if !search.index.contains_key(node.as_str()) {
            visit(node, graph, &mut search);
        }
    }
    search.components
}

/// The shortest import path from the component's first module back to itself.
fn shortest_cycle(graph: &BTreeMap<String, BTreeSet<String>>, component: &[String]) -> Vec<String> {
    let start = &component[0];
    let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
    let mut frontier = vec![start];
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for node in frontier {
            for target in graph[node].iter().filter(|t| component.contains(t)) {
                if target == start {
                    let mut path = vec![node.clone()];
                    let mut at = node;
                    while at != start {
                        at = came_from[at];
                        path.push(at.clone());
                    }
                    path.reverse();
                    path.push(start.clone());
                    return path;
                }
                if !came_from.contains_key(target) && target != start {
                    came_from.insert(target, node);
                    next.push(target);
                }
            }
        }
        frontier = next;
    }
    component.to_vec()
}
