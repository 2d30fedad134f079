//! Where each key of a YAML document is: key paths (`schedules[0].cron`) to lines and back.
//!
//! serde-saphyr reports the line and column of an error but not the key it was reading, and
//! checks made after deserialising (cross-field rules) know the key but not the line. This index
//! answers both questions from one pass over the parser's events. It never fails: on a syntax
//! error it keeps what it saw before it.
//!
//! Merge keys (`<<: *defaults`) are transparent: what they bring in belongs to the mapping that
//! merges them. Aliases are indexed where they are used, not expanded.

use serde_saphyr::granit_parser::{Event, Parser, Span};

/// A line and a column, both counted from 1, in characters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Scalar,
    Mapping,
    Sequence,
    Alias,
}

/// One value in the document, with the key path that leads to it.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub path: String,
    /// Where its key is written (none for the root and list items).
    pub key: Option<Pos>,
    pub start: Pos,
    pub end: Pos,
    pub kind: NodeKind,
    /// The text of a scalar (empty for a null written as nothing).
    pub scalar: Option<String>,
}

/// Every node of the first document, in document order (a parent before its children).
#[derive(Debug, Default)]
pub(crate) struct PathIndex {
    nodes: Vec<Node>,
    /// The parser stopped at a syntax error.
    broken: bool,
}

enum Frame {
    Mapping {
        node: Option<usize>,
        path: String,
        /// The key read, waiting for its value.
        key: Option<(String, Pos)>,
    },
    Sequence {
        node: Option<usize>,
        path: String,
        next: usize,
        /// A list under `<<`: its items merge into `path` itself.
        merged: bool,
    },
    /// A mapping or list used as a key: skipped, with its nesting depth.
    ComplexKey { depth: usize },
}

fn pos(span: &Span) -> (Pos, Pos) {
    let at = |m: serde_saphyr::granit_parser::Marker| Pos {
        line: m.line(),
        column: m.col() + 1,
    };
    (at(span.start), at(span.end))
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl PathIndex {
    pub(crate) fn build(text: &str) -> PathIndex {
        let mut index = PathIndex::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut parser = Parser::new_from_str(text);
        let mut documents = 0;
        let mut broken = false;
        loop {
            let (event, span) = match parser.next_event() {
                Some(Ok(next)) => next,
                Some(Err(_)) => {
                    broken = true;
                    break;
                }
                None => break,
            };
            let (start, end) = pos(&span);
            let (kind, scalar) = match &event {
                Event::DocumentStart(..) => {
                    documents += 1;
                    if documents > 1 {
                        break;
                    }
                    continue;
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    match stack.last_mut() {
                        Some(Frame::ComplexKey { depth }) if *depth > 1 => *depth -= 1,
                        Some(Frame::ComplexKey { .. }) => {
                            stack.pop();
                        }
                        Some(Frame::Mapping { node, .. } | Frame::Sequence { node, .. }) => {
                            if let Some(node) = *node {
                                index.nodes[node].end = end;
                            }
                            stack.pop();
                        }
                        None => {}
                    }
                    continue;
                }
                Event::Scalar(value, ..) => (NodeKind::Scalar, Some(value.to_string())),
                Event::MappingStart(..) => (NodeKind::Mapping, None),
                Event::SequenceStart(..) => (NodeKind::Sequence, None),
                Event::Alias(..) => (NodeKind::Alias, None),
                _ => continue,
            };
            let opens = matches!(kind, NodeKind::Mapping | NodeKind::Sequence);
            // Decide the node's path from where it sits.
            let (path, key, merged) = match stack.last_mut() {
                None => (String::new(), None, false),
                Some(Frame::ComplexKey { depth }) => {
                    if opens {
                        *depth += 1;
                    }
                    continue;
                }
                Some(Frame::Mapping {
                    key: slot @ None, ..
                }) => {
                    // This node is a key.
                    if let Some(name) = scalar {
                        *slot = Some((name, start));
                    } else {
                        *slot = Some(("?".to_string(), start));
                        if opens {
                            stack.push(Frame::ComplexKey { depth: 1 });
                        }
                    }
                    continue;
                }
                Some(Frame::Mapping { path, key, .. }) => {
                    let (name, at) = key.take().unwrap_or_default();
                    if name == "<<" {
                        (path.clone(), Some(at), true)
                    } else {
                        (join(path, &name), Some(at), false)
                    }
                }
                Some(Frame::Sequence {
                    path, next, merged, ..
                }) => {
                    let item = if *merged {
                        path.clone()
                    } else {
                        format!("{path}[{next}]")
                    };
                    *next += 1;
                    (item, None, *merged)
                }
            };
            // What `<<` brings in is indexed under the mapping that merges it, not as a node.
            let node = (!merged).then(|| {
                index.nodes.push(Node {
                    path: path.clone(),
                    key,
                    start,
                    end,
                    kind,
                    scalar,
                });
                index.nodes.len() - 1
            });
            match kind {
                NodeKind::Mapping => stack.push(Frame::Mapping {
                    node,
                    path,
                    key: None,
                }),
                NodeKind::Sequence => stack.push(Frame::Sequence {
                    node,
                    path,
                    next: 0,
                    merged,
                }),
                NodeKind::Scalar | NodeKind::Alias => {}
            }
        }
        if broken {
            index.broken = true;
            index.close_at_syntax_error(&stack);
        }
        index
    }

    /// After a syntax error the open collections reach to the end of the text, and a key
    /// still waiting for its value (the usual place of the error) becomes a node.
    fn close_at_syntax_error(&mut self, stack: &[Frame]) {
        const END: Pos = Pos {
            line: usize::MAX,
            column: usize::MAX,
        };
        for frame in stack {
            if let Frame::Mapping {
                node: Some(node), ..
            }
            | Frame::Sequence {
                node: Some(node), ..
            } = frame
            {
                self.nodes[*node].end = END;
            }
        }
        if let Some(Frame::Mapping {
            path,
            key: Some((name, at)),
            ..
        }) = stack.last()
        {
            self.nodes.push(Node {
                path: join(path, name),
                key: Some(*at),
                start: *at,
                end: END,
                kind: NodeKind::Scalar,
                scalar: None,
            });
        }
    }

    /// The deepest node whose value starts at `at` (where serde-saphyr reports a value of
    /// the wrong kind), else [`PathIndex::at`].
    pub(crate) fn value_at(&self, at: Pos) -> Option<&Node> {
        self.nodes
            .iter()
            .rev()
            .find(|n| n.start == at)
            .or_else(|| self.at(at))
    }

    /// Whether the document has no value at all (empty, or only comments).
    /// Every node, parents before children, in document order.
    pub(crate) fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.nodes.is_empty() && !self.broken
    }

    /// The node at `path`, if the document has one (the last, if a key is repeated).
    pub(crate) fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.iter().rev().find(|n| n.path == path)
    }

    /// The node nearest to an error position: the deepest whose key or value starts there,
    /// else the deepest that contains it, else the last one before it.
    pub(crate) fn at(&self, at: Pos) -> Option<&Node> {
        self.nodes
            .iter()
            .rev()
            .find(|n| n.key == Some(at) || n.start == at)
            .or_else(|| {
                self.nodes
                    .iter()
                    .rev()
                    .find(|n| n.start <= at && at < n.end)
            })
            .or_else(|| {
                self.nodes
                    .iter()
                    .rev()
                    .find(|n| n.key.unwrap_or(n.start) <= at)
            })
    }

    /// The node whose value (not key) starts at `at`, preferring mappings: where serde-saphyr
    /// reports a missing key.
    pub(crate) fn container_at(&self, at: Pos) -> Option<&Node> {
        let starting = || self.nodes.iter().rev().filter(|n| n.start == at);
        starting()
            .find(|n| n.kind == NodeKind::Mapping)
            .or_else(|| starting().next())
    }

    /// The node whose key is written at `at`.
    pub(crate) fn key_at(&self, at: Pos) -> Option<&Node> {
        self.nodes.iter().rev().find(|n| n.key == Some(at))
    }

    /// Where to point for `path`: its value if written, else the nearest written ancestor.
    pub(crate) fn locate(&self, path: &str) -> Option<Pos> {
        let mut path = path;
        loop {
            if let Some(node) = self.get(path) {
                return Some(node.start);
            }
            if path.is_empty() {
                return None;
            }
            path = parent(path);
        }
    }
}

/// `a.b[2].c` -> `a.b[2]` -> `a.b` -> `a` -> ``.
pub(crate) fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
storage:
  url: s3://b
  objectLock: {mode: GOVERNANCE, retainDays: 7}
schedules:
  - name: a
    cron: \"0 2 * * *\"
  - &b
    name: b
    retention:
      keepLast: 3
defaults: &d
  x: 1
merged:
  <<: *d
  y: 2
";

    #[test]
    fn paths_map_to_positions_and_back() {
        let index = PathIndex::build(DOC);
        let url = index.get("storage.url").unwrap();
        assert_eq!(
            (url.key, url.start),
            (Some(Pos { line: 2, column: 3 }), Pos { line: 2, column: 8 })
        );
        assert_eq!(
            index.get("storage.objectLock.retainDays").unwrap().start,
            Pos {
                line: 3,
                column: 46
            }
        );
        assert_eq!(
            index.get("schedules[0].cron").unwrap().start,
            Pos {
                line: 6,
                column: 11
            }
        );
        assert_eq!(
            index
                .get("schedules[1].retention.keepLast")
                .unwrap()
                .start
                .line,
            10
        );
        assert_eq!(index.get("merged").unwrap().kind, NodeKind::Mapping);
        assert_eq!(index.get("merged.y").unwrap().start.line, 15);
        assert_eq!(
            index
                .at(Pos {
                    line: 6,
                    column: 11
                })
                .unwrap()
                .path,
            "schedules[0].cron"
        );
        assert_eq!(
            index.key_at(Pos { line: 5, column: 5 }).unwrap().path,
            "schedules[0].name"
        );
        assert_eq!(
            index.container_at(Pos { line: 5, column: 5 }).unwrap().path,
            "schedules[0]"
        );
        assert_eq!(
            index.locate("schedules[1].retention.maxAge"),
            Some(Pos {
                line: 10,
                column: 7
            })
        );
        assert_eq!(
            index.locate("server.listen"),
            Some(Pos { line: 1, column: 1 })
        );
    }

    #[test]
    fn survives_broken_documents() {
        for text in [
            "",
            "a: [",
            "a: \"x",
            "- - - -",
            "? [a]\n: 1\nb: 2",
            "a: b: c",
            "&x a: *x",
        ] {
            let _ = PathIndex::build(text);
        }
        assert_eq!(
            PathIndex::build("? [a, {b: 1}]\n: 1\nc: 2\n")
                .get("c")
                .unwrap()
                .start
                .line,
            3
        );
    }
}
