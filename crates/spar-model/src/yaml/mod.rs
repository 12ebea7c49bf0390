//! YAML reading with positions and Kubernetes' scalar rules.

mod de;
mod json;
mod node;
mod parse;

pub use de::{from_node, from_node_at, DeError, Notice};
pub use json::node_from_json;
pub use node::{Key, Mark, Node, NodeKind, Resolved, Scalar, ScalarStyle};
pub use parse::{parse_documents, YamlDocument, YamlError};
