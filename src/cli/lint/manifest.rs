//! Manifest files as documents: the value of each YAML or JSON document, and the line each of its
//! fields starts on, so a finding can point at `file:line`.
//!
//! The values are built from the parser's events rather than through serde, because serde drops
//! positions. Scalars resolve by the YAML 1.2 core schema; anchors, aliases and `<<` merge keys are
//! expanded. Mappings keep their order, so `--fix` writes fields back where they were.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, ScanError, Span};
use serde_norway::{Mapping, Number, Value};
use thiserror::Error;

/// One step into a document: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

/// Where a field is in a document: `spec.imagePullSecrets[0].name`, `data[".dockerconfigjson"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct FieldPath(Vec<Segment>);

impl FieldPath {
    pub(crate) fn root() -> FieldPath {
        FieldPath::default()
    }

    /// This path extended by mapping keys, in order.
    pub(crate) fn keys(&self, keys: &[&str]) -> FieldPath {
        let mut path = self.clone();
        path.0.extend(keys.iter().map(|key| Segment::Key((*key).to_owned())));
        path
    }

    /// This path followed by `other`.
    pub(crate) fn join(&self, other: &FieldPath) -> FieldPath {
        let mut path = self.clone();
        path.0.extend(other.0.iter().cloned());
        path
    }

    pub(crate) fn index(&self, index: usize) -> FieldPath {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }

    pub(crate) fn segments(&self) -> &[Segment] {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(key)?;
                }
                Segment::Key(key) => write!(f, "[{key:?}]")?,
            }
        }
        Ok(())
    }
}

/// One document of a manifest file.
#[derive(Debug, Clone)]
pub(crate) struct Document {
    /// The file it came from, as given on the command line (`<stdin>` for `-`).
    pub(crate) source: String,
    /// Position in the file, from 1.
    pub(crate) number: usize,
    pub(crate) value: Value,
    /// The line each field starts on, from 1.
    positions: Positions,
}

impl Document {
    /// The line of the field, or of its nearest ancestor that exists.
    pub(crate) fn line_of(&self, path: &FieldPath) -> usize {
        self.positions.line_of(path)
    }

    /// Sets the value at `path`, creating missing mappings on the way; `false` when a step goes
    /// through something that is not a mapping or a sequence index that does not exist.
    pub(crate) fn set(&mut self, path: &FieldPath, value: Value) -> bool {
        let mut current = &mut self.value;
        for segment in path.segments() {
            current = match (segment, current) {
                (Segment::Key(key), Value::Mapping(mapping)) => {
                    mapping.entry(Value::String(key.clone())).or_insert(Value::Mapping(Mapping::new()))
                }
                (Segment::Index(index), Value::Sequence(items)) => match items.get_mut(*index) {
                    Some(item) => item,
                    None => return false,
                },
                _ => return false,
            };
        }
        *current = value;
        true
    }
}

/// The line each field of a document starts on, as a tree: a field is kept as its parent and its
/// last step, so the positions grow with the document, never with its depth times its size (a
/// whole path per field would make megabytes of nested keys cost gigabytes).
#[derive(Debug, Clone)]
struct Positions {
    /// The line of each field by its id; 0 is the document itself.
    lines: Vec<usize>,
    children: HashMap<(usize, Segment), usize>,
}

/// The id of a field whose position is not kept: anything inside a mapping key.
const UNRECORDED: usize = usize::MAX;

impl Positions {
    fn new() -> Positions {
        Positions { lines: vec![1], children: HashMap::new() }
    }

    /// Records that the field `step` below `parent` starts on `line`; returns its id.
    fn record(&mut self, parent: usize, step: Segment, line: usize) -> usize {
        if parent == UNRECORDED {
            return UNRECORDED;
        }
        let next = self.lines.len();
        let id = *self.children.entry((parent, step)).or_insert(next);
        if id == next {
            self.lines.push(line);
        } else {
            self.lines[id] = line;
        }
        id
    }

    fn set_line(&mut self, id: usize, line: usize) {
        if let Some(recorded) = self.lines.get_mut(id) {
            *recorded = line;
        }
    }

    /// The line of the field, or of its nearest recorded ancestor.
    fn line_of(&self, path: &FieldPath) -> usize {
        let mut id = 0;
        for step in path.segments() {
            match self.children.get(&(id, step.clone())) {
                Some(child) => id = *child,
                None => break,
            }
        }
        self.lines[id]
    }
}

/// The value at `path` below `value`.
pub(crate) fn lookup<'v>(value: &'v Value, path: &FieldPath) -> Option<&'v Value> {
    path.segments().iter().try_fold(value, |current, segment| match segment {
        Segment::Key(key) => current.get(key.as_str()),
        Segment::Index(index) => current.get(*index),
    })
}

/// The most a document may nest (mappings and sequences): Kubernetes objects, CRD schemas
/// included, stay far below it, and it bounds the reader's recursion and the paths it records.
pub(crate) const MAX_DEPTH: usize = 128;
/// The most nodes that aliases may copy into one input, in total: a few levels of aliases that
/// each repeat the one before (an "alias bomb") would otherwise grow a few hundred bytes into
/// billions of nodes.
pub(crate) const MAX_ALIAS_NODES: usize = 100_000;
/// The most scalar text that aliases may copy into one input, in total: one long string aliased
/// many times is few nodes but many bytes.
pub(crate) const MAX_ALIAS_BYTES: usize = 16 * 1024 * 1024;
/// The largest input read, per file or stdin; a Kubernetes object is at most about 1.5 MB.
pub(crate) const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;

/// Why an input was not read. A parser's message names a position, never the content.
#[derive(Debug, Error)]
pub(crate) enum ManifestError {
    #[error("{source_name}: not YAML or JSON: line {line} column {column}: {reason}")]
    Syntax { source_name: String, line: usize, column: usize, reason: String },
    #[error("{source_name}: refused at line {line} column {column}: {limit}")]
    Limit { source_name: String, line: usize, column: usize, limit: Limit },
}

/// A bound on what one input may cost to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub(crate) enum Limit {
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    Depth,
    #[error("anchors and aliases copy more than {MAX_ALIAS_NODES} nodes (an alias bomb?)")]
    AliasNodes,
    #[error("anchors and aliases copy more than {} MiB of text (an alias bomb?)", MAX_ALIAS_BYTES / (1024 * 1024))]
    AliasBytes,
}

/// What stops the builder: the parser's error, or a limit at a position.
enum BuildError {
    Scan(ScanError),
    Limit(Marker, Limit),
}

impl From<ScanError> for BuildError {
    fn from(error: ScanError) -> BuildError {
        BuildError::Scan(error)
    }
}

/// Every non-empty document of a YAML (or JSON, which is YAML) text.
pub(crate) fn parse_documents(source: &str, text: &str) -> Result<Vec<Document>, ManifestError> {
    let source_name = source.to_owned();
    let error = |e: BuildError| match e {
        // The scanner's own bound on flow nesting (`[[[...`) is the same limit, met earlier.
        BuildError::Scan(e) if e.info() == "recursion limit exceeded" => ManifestError::Limit {
            source_name: source_name.clone(),
            line: e.marker().line(),
            column: e.marker().col() + 1,
            limit: Limit::Depth,
        },
        BuildError::Scan(e) => ManifestError::Syntax {
            source_name: source_name.clone(),
            line: e.marker().line(),
            column: e.marker().col() + 1,
            reason: e.info().to_owned(),
        },
        BuildError::Limit(at, limit) => {
            ManifestError::Limit { source_name: source_name.clone(), line: at.line(), column: at.col() + 1, limit }
        }
    };
    let mut builder = Builder {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        positions: Positions::new(),
        depth: 0,
        nodes: 0,
        bytes: 0,
        alias_nodes: 0,
        alias_bytes: 0,
    };
    let mut documents = Vec::new();
    let mut number = 0;
    while let Some((event, _)) = builder.parser.next().transpose().map_err(|e| error(e.into()))? {
        match event {
            Event::DocumentStart(_) => {
                number += 1;
                let value = builder.next_node(0).map_err(error)?;
                let positions = std::mem::replace(&mut builder.positions, Positions::new());
                builder.anchors.clear();
                if !value.is_null() {
                    documents.push(Document { source: source.to_owned(), number, value, positions });
                }
            }
            Event::StreamEnd => break,
            _ => {}
        }
    }
    Ok(documents)
}

struct Builder<'input> {
    parser: Parser<'input, saphyr_parser::StrInput<'input>>,
    /// Each anchored value with the nodes and the scalar bytes it holds.
    anchors: HashMap<usize, (Value, usize, usize)>,
    positions: Positions,
    /// Collections open around the current node.
    depth: usize,
    /// Nodes built so far, aliases' copies included.
    nodes: usize,
    /// Scalar text built so far, aliases' copies included.
    bytes: usize,
    /// Nodes that aliases copied so far, in the whole input.
    alias_nodes: usize,
    /// Scalar text that aliases copied so far, in the whole input.
    alias_bytes: usize,
}

impl Builder<'_> {
    fn next_event(&mut self) -> Result<(Event<'_>, Span), ScanError> {
        self.parser.next().unwrap_or_else(|| Ok((Event::StreamEnd, Span::empty(Default::default()))))
    }

    /// Reads one node starting at the next event; records its line as field `id`'s.
    fn next_node(&mut self, id: usize) -> Result<Value, BuildError> {
        let (event, span) = self.next_event()?;
        let event = event.into_owned_event();
        self.positions.set_line(id, span.start.line());
        self.node(event, span.start, id)
    }

    /// Builds the node that starts with `event`, the field `id` of the document.
    fn node(&mut self, event: OwnedEvent, at: Marker, id: usize) -> Result<Value, BuildError> {
        let (first_node, first_byte) = (self.nodes, self.bytes);
        self.nodes += 1;
        let (value, anchor) = match event {
            OwnedEvent::Scalar { text, plain, string_tag, anchor } => {
                self.bytes += text.len();
                (if plain && !string_tag { resolve_plain(&text) } else { Value::String(text) }, anchor)
            }
            OwnedEvent::Alias(anchor) => {
                let Some(&(_, nodes, bytes)) = self.anchors.get(&anchor) else { return Ok(Value::Null) };
                self.copied(nodes, bytes, at)?;
                self.nodes += nodes;
                self.bytes += bytes;
                (self.anchors[&anchor].0.clone(), 0)
            }
            OwnedEvent::SequenceStart(anchor) => {
                self.enter(at)?;
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next_event()?;
                    let event = event.into_owned_event();
                    if matches!(event, OwnedEvent::End) {
                        break;
                    }
                    let item = self.positions.record(id, Segment::Index(items.len()), span.start.line());
                    items.push(self.node(event, span.start, item)?);
                }
                self.depth -= 1;
                (Value::Sequence(items), anchor)
            }
            OwnedEvent::MappingStart(anchor) => {
                self.enter(at)?;
                let mapping = self.mapping(id)?;
                self.depth -= 1;
                (Value::Mapping(mapping), anchor)
            }
            OwnedEvent::End => (Value::Null, 0),
        };
        if anchor != 0 {
            // Keeping the anchored value is a copy too: anchors nested in anchors would each copy
            // all they hold, a 16 MiB input times its depth.
            let (nodes, bytes) = (self.nodes - first_node, self.bytes - first_byte);
            self.copied(nodes, bytes, at)?;
            self.anchors.insert(anchor, (value.clone(), nodes, bytes));
        }
        Ok(value)
    }

    /// Counts a copy of `nodes` nodes holding `bytes` of scalar text against the input's budget.
    fn copied(&mut self, nodes: usize, bytes: usize, at: Marker) -> Result<(), BuildError> {
        self.alias_nodes += nodes;
        self.alias_bytes += bytes;
        if self.alias_nodes > MAX_ALIAS_NODES {
            return Err(BuildError::Limit(at, Limit::AliasNodes));
        }
        if self.alias_bytes > MAX_ALIAS_BYTES {
            return Err(BuildError::Limit(at, Limit::AliasBytes));
        }
        Ok(())
    }

    /// One level deeper, within [`MAX_DEPTH`].
    fn enter(&mut self, at: Marker) -> Result<(), BuildError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(BuildError::Limit(at, Limit::Depth));
        }
        Ok(())
    }

    fn mapping(&mut self, id: usize) -> Result<Mapping, BuildError> {
        let mut mapping = Mapping::new();
        let mut merged = Mapping::new();
        loop {
            let (event, span) = self.next_event()?;
            let event = event.into_owned_event();
            if matches!(event, OwnedEvent::End) {
                break;
            }
            let line = span.start.line();
            let key = self.node(event, span.start, UNRECORDED)?;
            let key_text = match &key {
                Value::String(s) => s.clone(),
                other => serde_norway::to_string(other).unwrap_or_default().trim_end().to_owned(),
            };
            let merge = key_text == "<<";
            let field = self.positions.record(id, Segment::Key(key_text), line);
            let value = self.next_node(field)?;
            // The value's own line would point past the key for block values.
            self.positions.set_line(field, line);
            if merge {
                let sources = match value {
                    Value::Sequence(items) => items,
                    single => vec![single],
                };
                for source in sources {
                    if let Value::Mapping(source) = source {
                        for (k, v) in source {
                            merged.entry(k).or_insert(v);
                        }
                    }
                }
            } else {
                mapping.insert(key, value);
            }
        }
        // Keys written in the mapping win over merged ones.
        for (k, v) in merged {
            mapping.entry(k).or_insert(v);
        }
        Ok(mapping)
    }
}

/// The events the builder needs, detached from the input's lifetime.
enum OwnedEvent {
    Scalar {
        text: String,
        plain: bool,
        string_tag: bool,
        anchor: usize,
    },
    Alias(usize),
    SequenceStart(usize),
    MappingStart(usize),
    /// The end of a sequence, a mapping, a document or the stream.
    End,
}

trait IntoOwnedEvent {
    fn into_owned_event(self) -> OwnedEvent;
}

impl IntoOwnedEvent for Event<'_> {
    fn into_owned_event(self) -> OwnedEvent {
        match self {
            Event::Scalar(text, style, anchor, tag) => OwnedEvent::Scalar {
                text: text.into_owned(),
                plain: style == ScalarStyle::Plain,
                string_tag: tag.is_some_and(|tag| tag.suffix == "str" || tag.suffix.ends_with(":str")),
                anchor,
            },
            Event::Alias(anchor) => OwnedEvent::Alias(anchor),
            Event::SequenceStart(anchor, _) => OwnedEvent::SequenceStart(anchor),
            Event::MappingStart(anchor, _) => OwnedEvent::MappingStart(anchor),
            _ => OwnedEvent::End,
        }
    }
}

/// The YAML 1.2 core schema for plain scalars: null, booleans, integers, floats, else a string.
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let integer = if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<i64>().ok()
    } else if let Some(hex) = text.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(octal) = text.strip_prefix("0o") {
        i64::from_str_radix(octal, 8).ok()
    } else {
        None
    };
    if let Some(n) = integer {
        return Value::Number(Number::from(n));
    }
    let looks_numeric = unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && unsigned.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if let Some(n) = text.parse::<f64>().ok().filter(|_| looks_numeric) {
        return Value::Number(Number::from(n));
    }
    Value::String(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn documents(text: &str) -> Vec<Document> {
        parse_documents("test.yaml", text).unwrap()
    }

    #[test]
    fn documents_and_lines() {
        let text = "\
apiVersion: v1
kind: Secret
metadata:
  name: reg-cred
---
# a comment
---
apiVersion: v1
kind: Pod
spec:
  imagePullSecrets:
  - name: regcred
  containers:
    - name: app
      image: registry.internal.corp/app:v2.1.0
";
        let docs = documents(text);
        assert_eq!(docs.len(), 2, "the empty document is skipped");
        assert_eq!((docs[0].number, docs[1].number), (1, 3));
        let pull_secret = FieldPath::root().keys(&["spec", "imagePullSecrets"]).index(0).keys(&["name"]);
        assert_eq!(lookup(&docs[1].value, &pull_secret).and_then(Value::as_str), Some("regcred"));
        assert_eq!(docs[1].line_of(&pull_secret), 12);
        let image = FieldPath::root().keys(&["spec", "containers"]).index(0).keys(&["image"]);
        assert_eq!(docs[1].line_of(&image), 15);
        assert_eq!(docs[1].line_of(&FieldPath::root().keys(&["spec", "containers"]).index(0)), 14);
        assert_eq!(docs[1].line_of(&FieldPath::root().keys(&["spec", "missing", "deeper"])), 10);
        assert_eq!(docs[0].line_of(&FieldPath::root().keys(&["metadata", "name"])), 4);
    }

    #[test]
    fn json_is_read_with_lines() {
        let docs =
            documents("{\n  \"kind\": \"Secret\",\n  \"data\": {\n    \".dockerconfigjson\": \"e30=\"\n  }\n}\n");
        let key = FieldPath::root().keys(&["data", ".dockerconfigjson"]);
        assert_eq!(lookup(&docs[0].value, &key).and_then(Value::as_str), Some("e30="));
        assert_eq!(docs[0].line_of(&key), 4);
        assert_eq!(key.to_string(), r#"data[".dockerconfigjson"]"#);
    }

    #[test]
    fn scalars_resolve_by_the_core_schema() {
        let docs = documents("a: 1\nb: '1'\nc: true\nd: ~\ne: 1.5\nf: v1.2\ng: !!str 7\nh: 0x1f\n");
        let v = &docs[0].value;
        assert_eq!(v["a"], Value::Number(1.into()));
        assert_eq!(v["b"], Value::String("1".into()));
        assert_eq!(v["c"], Value::Bool(true));
        assert_eq!(v["d"], Value::Null);
        assert_eq!(v["e"], Value::Number(1.5.into()));
        assert_eq!(v["f"], Value::String("v1.2".into()));
        assert_eq!(v["g"], Value::String("7".into()));
        assert_eq!(v["h"], Value::Number(31.into()));
    }

    #[test]
    fn anchors_aliases_and_merge_keys_expand() {
        let docs = documents("base: &b {name: x, image: a}\nuse: *b\nmerged:\n  <<: *b\n  image: c\n");
        let v = &docs[0].value;
        assert_eq!(v["use"]["image"], Value::String("a".into()));
        assert_eq!(v["merged"]["name"], Value::String("x".into()));
        assert_eq!(v["merged"]["image"], Value::String("c".into()));
    }

    #[test]
    fn syntax_errors_name_the_position() {
        let err = parse_documents("bad.yaml", "a: [1, 2\nb: c\n").unwrap_err();
        let ManifestError::Syntax { source_name, line, .. } = &err else { panic!("{err}") };
        assert_eq!(source_name, "bad.yaml");
        assert!(*line >= 1, "{err}");
    }

    #[test]
    fn set_creates_missing_mappings() {
        let mut doc = documents("metadata: {name: a}\n").remove(0);
        assert!(doc.set(&FieldPath::root().keys(&["metadata", "namespace"]), Value::String("prod".into())));
        assert_eq!(doc.value["metadata"]["namespace"], Value::String("prod".into()));
        assert!(!doc.set(&FieldPath::root().keys(&["metadata", "name", "x"]), Value::Null));
    }

    #[test]
    fn nesting_is_read_up_to_the_limit_and_refused_past_it() {
        let nested = |depth: usize| format!("{}x\n", "- ".repeat(depth));
        assert_eq!(documents(&nested(MAX_DEPTH)).len(), 1);
        let err = parse_documents("deep.yaml", &nested(MAX_DEPTH + 1)).unwrap_err();
        assert!(matches!(err, ManifestError::Limit { limit: Limit::Depth, line: 1, .. }), "{err}");
    }

    #[test]
    fn aliases_are_counted_by_the_nodes_they_copy() {
        // An anchor of 1 + 1,000 nodes, kept once and used 98 times: 99,099 copied nodes, within
        // the limit.
        let items = vec!["1"; 1_000].join(",");
        let uses = vec!["*a"; 98].join(",");
        let doc = documents(&format!("a: &a [{items}]\nb: [{uses}]\n")).remove(0);
        assert_eq!(doc.value["b"][97][999], Value::Number(1.into()));
        let err = parse_documents("x.yaml", &format!("a: &a [{items}]\nb: [{uses}, *a]\n")).unwrap_err();
        assert!(matches!(err, ManifestError::Limit { limit: Limit::AliasNodes, line: 2, .. }), "{err}");
        // The budget is per input, across documents.
        let split = format!("a: &a [{items}]\nb: [{uses}]\n---\na: &a [{items}]\nb: [*a]\n");
        assert!(parse_documents("x.yaml", &split).is_err());
    }

    #[test]
    fn aliases_are_counted_by_the_text_they_copy() {
        // One node of 1 MiB: 16 copies (the anchor's own, 15 aliases) fit the budget, the 17th
        // does not.
        let text = "x".repeat(1024 * 1024);
        let doc = documents(&format!("a: &a {text}\nb: [{}]\n", vec!["*a"; 15].join(","))).remove(0);
        assert_eq!(doc.value["b"][14].as_str().map(str::len), Some(1024 * 1024));
        let err = parse_documents("x.yaml", &format!("a: &a {text}\nb: [{}]\n", vec!["*a"; 16].join(","))).unwrap_err();
        assert!(matches!(err, ManifestError::Limit { limit: Limit::AliasBytes, line: 2, .. }), "{err}");
    }

    #[test]
    fn positions_cost_the_size_of_the_document_not_its_depth_times_its_size() {
        // 100 levels of 1 KiB keys, then 1,000 leaves: a whole path per field would copy the
        // 100 KiB of keys above for every leaf.
        let key = |level: usize| format!("k{level}{}", "x".repeat(1024));
        let mut yaml: String = (0..100).map(|level| format!("{{{}: ", key(level))).collect();
        yaml.push('{');
        yaml.push_str(&(0..1000).map(|leaf| format!("leaf{leaf}: 1")).collect::<Vec<_>>().join(", "));
        yaml.push_str(&"}".repeat(101));
        let doc = documents(&yaml).remove(0);
        let kept: usize = doc
            .positions
            .children
            .keys()
            .map(|(_, step)| match step {
                Segment::Key(key) => key.len(),
                Segment::Index(_) => 0,
            })
            .sum();
        assert!(kept < 2 * yaml.len(), "{kept} bytes of keys kept for a document of {}", yaml.len());
        let deepest = (0..100).fold(FieldPath::root(), |path, level| path.keys(&[&key(level)]));
        assert_eq!(doc.line_of(&deepest.keys(&["leaf999"])), 1);
        assert_eq!(doc.positions.lines.len(), 1 + 100 + 1000);
    }
}
