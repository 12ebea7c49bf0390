//! JSON values as [`Node`] trees, so resources Spar writes (converted legacy APIs)
//! pass through the same checks as resources users write.

use super::node::{Key, Mark, Node, NodeKind, ScalarStyle};

/// Builds a tree from a JSON value; every node carries `mark` (the origin to blame).
pub fn node_from_json(value: &serde_json::Value, mark: Mark) -> Node {
    use serde_json::Value;
    let kind = match value {
        Value::Null => return Node::null(mark),
        Value::Bool(b) => return Node::scalar(b.to_string(), ScalarStyle::Plain, mark),
        Value::Number(n) => return Node::scalar(n.to_string(), ScalarStyle::Plain, mark),
        Value::String(s) => return Node::scalar(s.clone(), ScalarStyle::Quoted, mark),
        Value::Array(items) => {
            NodeKind::Seq(items.iter().map(|v| node_from_json(v, mark)).collect())
        }
        Value::Object(map) => NodeKind::Map(
            map.iter()
                .map(|(k, v)| {
                    (
                        Key {
                            text: k.clone(),
                            mark,
                        },
                        node_from_json(v, mark),
                    )
                })
                .collect(),
        ),
    };
    Node::new(kind, mark)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::from_node;

    #[test]
    fn round_trips_through_the_deserializer() {
        let v = serde_json::json!({"a": [1, "2", true, null], "b": {"c": 1.5}});
        let node = node_from_json(&v, Mark { line: 3, col: 1 });
        let back: serde_json::Value = from_node(&node, None).unwrap();
        assert_eq!(back, v);
    }
}
