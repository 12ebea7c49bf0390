//! YAML text to positioned [`Node`] trees, one per document.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle as SaphyrStyle, Span};

use super::node::{Key, Mark, Node, NodeKind, Scalar, ScalarStyle};

/// Upper bound on nodes in one document after alias expansion ("billion laughs").
const MAX_NODES: usize = 2_000_000;
/// Upper bound on nesting; deeper input is refused before it can exhaust the stack.
const MAX_DEPTH: usize = 200;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {}: {message}", mark.line)]
pub struct YamlError {
    pub mark: Mark,
    pub message: String,
}

/// A document read from a YAML stream: its tree and the line where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlDocument {
    pub root: Node,
    /// Index of the document in its stream, counting empty ones (0-based).
    pub index: usize,
}

/// Parses every document of a YAML (or JSON) stream. Empty documents are skipped.
pub fn parse_documents(src: &str) -> Result<Vec<YamlDocument>, YamlError> {
    let mut builder = Builder {
        source: Source::new(src),
        ..Builder::default()
    };
    let mut parser = Parser::new_from_str(src);
    let mut docs = Vec::new();
    let mut index = 0usize;
    while let Some(ev) = parser.next_event() {
        let (event, span) = ev.map_err(|e| YamlError {
            mark: Mark {
                line: to_u32(e.marker().line()),
                col: to_u32(e.marker().col() + 1),
            },
            message: e.info().to_string(),
        })?;
        match event {
            Event::DocumentStart(_) => {
                builder.anchors.clear();
                builder.stack.clear();
                builder.root = None;
            }
            Event::DocumentEnd => {
                if let Some(root) = builder.root.take() {
                    if !root.is_null() {
                        docs.push(YamlDocument { root, index });
                    }
                }
                index += 1;
            }
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
            other => builder.on_event(other, span)?,
        }
    }
    Ok(docs)
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn mark_of(span: &Span) -> Mark {
    Mark {
        line: to_u32(span.start.line()),
        col: to_u32(span.start.col() + 1),
    }
}

enum Frame {
    Seq {
        items: Vec<Node>,
        mark: Mark,
        anchor: usize,
        flow: bool,
    },
    Map {
        entries: Vec<(Key, Node)>,
        pending_key: Option<Node>,
        mark: Mark,
        anchor: usize,
        /// A `key: value` pair written bare inside a flow sequence (`[a: b]`).
        implicit_in_flow_seq: bool,
        /// Character index just past the first key, to re-read `[001:db8::]`.
        first_key_end: Option<usize>,
    },
}

/// Character access into the source, for the few places where Go's YAML scanner and
/// YAML 1.2 disagree and the original text decides. Marks count characters, so a
/// non-ASCII text gets a character table, built only when first needed.
#[derive(Default)]
struct Source<'a> {
    text: &'a str,
    ascii: bool,
    chars: std::cell::OnceCell<Vec<char>>,
}

impl<'a> Source<'a> {
    fn new(text: &'a str) -> Self {
        Source {
            text,
            ascii: text.is_ascii(),
            chars: std::cell::OnceCell::new(),
        }
    }

    fn at(&self, index: usize) -> Option<char> {
        if self.ascii {
            return self.text.as_bytes().get(index).map(|c| char::from(*c));
        }
        self.chars
            .get_or_init(|| self.text.chars().collect())
            .get(index)
            .copied()
    }
}

#[derive(Default)]
struct Builder<'a> {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    nodes: usize,
    source: Source<'a>,
    last_scalar_end: usize,
}

impl Builder<'_> {
    fn on_event(&mut self, event: Event<'_>, span: Span) -> Result<(), YamlError> {
        let mark = mark_of(&span);
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let style = match style {
                    SaphyrStyle::Plain => ScalarStyle::Plain,
                    SaphyrStyle::SingleQuoted | SaphyrStyle::DoubleQuoted => ScalarStyle::Quoted,
                    SaphyrStyle::Literal | SaphyrStyle::Folded => ScalarStyle::Block,
                };
                let tag = tag.map(|t| t.suffix.clone());
                self.last_scalar_end = span.end.index();
                let node = Node::new(
                    NodeKind::Scalar(Scalar {
                        text: text.into_owned(),
                        style,
                        tag,
                    }),
                    mark,
                );
                self.count(1, mark)?;
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(node, mark)
            }
            Event::SequenceStart(anchor, _) => {
                self.open(mark)?;
                let flow = self.source.at(span.start.index()) == Some('[');
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    mark,
                    anchor,
                    flow,
                });
                Ok(())
            }
            Event::MappingStart(anchor, _) => {
                self.open(mark)?;
                let in_flow_seq = matches!(self.stack.last(), Some(Frame::Seq { flow: true, .. }));
                let implicit_in_flow_seq =
                    in_flow_seq && self.source.at(span.start.index()) != Some('{');
                self.stack.push(Frame::Map {
                    entries: Vec::new(),
                    pending_key: None,
                    mark,
                    anchor,
                    implicit_in_flow_seq,
                    first_key_end: None,
                });
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq {
                        items,
                        mark,
                        anchor,
                        ..
                    }) => (Node::new(NodeKind::Seq(items), mark), anchor),
                    Some(Frame::Map {
                        entries,
                        mark,
                        anchor,
                        implicit_in_flow_seq,
                        first_key_end,
                        ..
                    }) => {
                        let node = match self.go_flow_scalar(
                            implicit_in_flow_seq,
                            first_key_end,
                            &entries,
                        ) {
                            Some(text) => Node::scalar(text, ScalarStyle::Plain, mark),
                            None => Node::new(NodeKind::Map(entries), mark),
                        };
                        (node, anchor)
                    }
                    None => {
                        return Err(YamlError {
                            mark,
                            message: "unbalanced collection end".into(),
                        })
                    }
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(node, mark)
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().ok_or_else(|| YamlError {
                    mark,
                    message: "alias refers to an unknown anchor".into(),
                })?;
                self.count(node.size(), mark)?;
                self.push_value(node, mark)
            }
            _ => Ok(()),
        }
    }

    /// Go's YAML scanner ends a plain scalar at `:` only when a blank follows, so
    /// `[1.2.3.4, 001:db8::]` is two strings there; YAML 1.2 (and saphyr) read the last
    /// item as `{"001:db8:": null}`. Kubernetes users write the former, so we re-read
    /// such a pair as the string Go would have produced.
    fn go_flow_scalar(
        &self,
        implicit: bool,
        key_end: Option<usize>,
        entries: &[(Key, Node)],
    ) -> Option<String> {
        if !implicit || entries.len() != 1 {
            return None;
        }
        let (key, value) = &entries[0];
        let empty = matches!(&value.kind, NodeKind::Scalar(s) if s.text.is_empty() && s.style == ScalarStyle::Plain);
        let end = key_end?;
        let colon_then_indicator = self.source.at(end) == Some(':')
            && matches!(self.source.at(end + 1), Some(',' | ']' | '}'));
        (empty && colon_then_indicator).then(|| format!("{}:", key.text))
    }

    fn open(&mut self, mark: Mark) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(YamlError {
                mark,
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
            });
        }
        self.count(1, mark)
    }

    fn count(&mut self, n: usize, mark: Mark) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(YamlError {
                mark,
                message: format!("document expands to more than {MAX_NODES} nodes (alias bomb?)"),
            });
        }
        Ok(())
    }

    fn push_value(&mut self, node: Node, mark: Mark) -> Result<(), YamlError> {
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map {
                entries,
                pending_key,
                first_key_end,
                ..
            }) => match pending_key.take() {
                None => {
                    if first_key_end.is_none() {
                        *first_key_end = Some(self.last_scalar_end);
                    }
                    *pending_key = Some(node);
                    Ok(())
                }
                Some(key) => {
                    let key_mark = key.mark;
                    let merge = matches!(&key.kind, NodeKind::Scalar(s) if s.text == "<<" && s.style == ScalarStyle::Plain);
                    if merge {
                        return merge_into(entries, node, mark);
                    }
                    let text =
                        match key.kind {
                            NodeKind::Scalar(s) => s.text,
                            _ => return Err(YamlError {
                                mark: key_mark,
                                message:
                                    "mapping keys must be scalars (Kubernetes reads YAML as JSON)"
                                        .into(),
                            }),
                        };
                    entries.push((
                        Key {
                            text,
                            mark: key_mark,
                        },
                        node,
                    ));
                    Ok(())
                }
            },
        }
    }
}

/// YAML 1.1 merge key (`<<: *base`), which Go's yaml.v2 honours: keys already
/// present win over merged ones.
fn merge_into(entries: &mut Vec<(Key, Node)>, value: Node, mark: Mark) -> Result<(), YamlError> {
    let sources: Vec<Node> = match value.kind {
        NodeKind::Map(_) => vec![value],
        NodeKind::Seq(items) => items,
        NodeKind::Scalar(_) => {
            return Err(YamlError {
                mark,
                message: "merge key `<<` needs a mapping or a list of mappings".into(),
            })
        }
    };
    for src in sources {
        let NodeKind::Map(src_entries) = src.kind else {
            return Err(YamlError {
                mark,
                message: "merge key `<<` needs a mapping or a list of mappings".into(),
            });
        };
        for (k, v) in src_entries {
            if !entries.iter().any(|(e, _)| e.text == k.text) {
                entries.push((k, v));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_with_positions() {
        let src =
            "a: 1\n---\n# only a comment\n---\nkind: X\nspec:\n  hosts: [1.2.3.4, 001:db8::]\n";
        let docs = parse_documents(src).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].index, 2);
        let hosts = docs[1].root.get("spec").unwrap().get("hosts").unwrap();
        assert_eq!(hosts.mark.line, 7);
        let items = hosts.as_seq().unwrap();
        assert_eq!(items[0].as_str(), Some("1.2.3.4"));
        assert_eq!(items[1].as_str(), Some("001:db8::"));
    }

    #[test]
    fn json_is_accepted() {
        let docs = parse_documents(
            r#"{"kind": "Gateway", "spec": {"servers": [{"port": {"number": 80}}]}}"#,
        )
        .unwrap();
        assert_eq!(docs[0].root.get("kind").unwrap().as_str(), Some("Gateway"));
    }

    #[test]
    fn aliases_and_merge_keys() {
        let src = "base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\nref: *b\n";
        let docs = parse_documents(src).unwrap();
        let other = docs[0].root.get("other").unwrap();
        assert_eq!(other.get("x").unwrap().as_str(), Some("1"));
        assert_eq!(other.get("y").unwrap().as_str(), Some("3"));
        assert_eq!(
            docs[0].root.get("ref").unwrap().get("y").unwrap().as_str(),
            Some("2")
        );
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            src.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        let err = parse_documents(&src).unwrap_err();
        assert!(err.message.contains("alias bomb"), "{err}");
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = parse_documents("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(err.mark.line >= 2, "{err:?}");
    }
}
