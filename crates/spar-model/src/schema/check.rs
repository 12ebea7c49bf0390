//! The walk: one schema against one positioned YAML node, Kubernetes' messages.
//!
//! Messages follow the API server's `path: Type: detail` form, e.g.
//! `spec.url: Invalid value: "null": spec.url in body must be of type string: "null"`;
//! a [`Diagnostic`] holds the path and the text after it.

use super::cel::{self, Outcome};
use super::go::go_quote;
use super::model::{ListType, Schema, Type};
use super::value::{int_value, number_value, seq_of, unique_entries};
use crate::yaml::{Node, NodeKind, Resolved};
use crate::{Diagnostic, FieldPath};

pub(crate) struct Walker<'o> {
    out: &'o mut Vec<Diagnostic>,
}

impl<'o> Walker<'o> {
    pub(crate) fn new(out: &'o mut Vec<Diagnostic>) -> Self {
        Walker { out }
    }

    fn report(&mut self, path: &FieldPath, node: &Node, message: String) {
        self.out.push(
            Diagnostic::error(path.clone(), message).with_location(None, Some(node.mark.line)),
        );
    }

    /// `Invalid value: <value>: <path> in body <detail>`: kube-openapi's form.
    fn invalid(&mut self, path: &FieldPath, node: &Node, value: &str, detail: &str) {
        self.report(
            path,
            node,
            format!("Invalid value: {value}: {} in body {detail}", shown(path)),
        );
    }

    pub(crate) fn check(&mut self, schema: &Schema, node: &Node, path: &mut FieldPath) {
        if node.is_null() {
            if !schema.nullable {
                if let Some(ty) = schema.ty {
                    self.type_error(path, node, ty.name());
                } else if schema.int_or_string {
                    self.type_error(path, node, "integer or string");
                }
            }
            return;
        }
        if schema.int_or_string {
            if !matches!(
                node.resolved(),
                Some(Resolved::Int(_) | Resolved::BigInt(_) | Resolved::Str(_))
            ) {
                self.type_error(path, node, "integer or string");
                return;
            }
        } else if let Some(ty) = schema.ty {
            if !self.check_typed(schema, ty, node, path) {
                return;
            }
        } else {
            self.check_untyped(schema, node, path);
        }
        self.combinators(schema, node, path);
        self.rules(schema, node, path);
    }

    /// Type and value checks; false when the type is wrong (nothing else then applies).
    fn check_typed(
        &mut self,
        schema: &Schema,
        ty: Type,
        node: &Node,
        path: &mut FieldPath,
    ) -> bool {
        match (ty, &node.kind) {
            (Type::Object, NodeKind::Map(_)) => self.object(schema, node, path),
            (Type::Array, NodeKind::Seq(_)) => self.array(schema, node, path),
            (Type::String, NodeKind::Scalar(s)) => self.string(schema, node, &s.text, path),
            (Type::Integer, NodeKind::Scalar(s)) => match int_value(node) {
                #[allow(clippy::cast_precision_loss)]
                Some(i) => self.number(schema, node, i as f64, &s.text, path),
                None => {
                    self.type_error(path, node, "integer");
                    return false;
                }
            },
            (Type::Number, NodeKind::Scalar(s)) => match number_value(node) {
                Some(f) => self.number(schema, node, f, &s.text, path),
                None => {
                    self.type_error(path, node, "number");
                    return false;
                }
            },
            (Type::Boolean, NodeKind::Scalar(_))
                if matches!(node.resolved(), Some(Resolved::Bool(_))) => {}
            _ => {
                self.type_error(path, node, ty.name());
                return false;
            }
        }
        true
    }

    /// A schema without `type` (inside `allOf`/`oneOf`/...) applies what fits the node.
    fn check_untyped(&mut self, schema: &Schema, node: &Node, path: &mut FieldPath) {
        match &node.kind {
            NodeKind::Map(_) => self.object(schema, node, path),
            NodeKind::Seq(_) => self.array(schema, node, path),
            NodeKind::Scalar(s) => {
                if let Some(f) = number_value(node)
                    .filter(|_| schema.minimum.is_some() || schema.maximum.is_some())
                {
                    self.number(schema, node, f, &s.text, path);
                } else {
                    self.string(schema, node, &s.text, path);
                }
            }
        }
    }

    fn type_error(&mut self, path: &FieldPath, node: &Node, want: &str) {
        let got = node.type_name();
        self.invalid(
            path,
            node,
            &format!("\"{got}\""),
            &format!("must be of type {want}: \"{got}\""),
        );
    }

    fn object(&mut self, schema: &Schema, node: &Node, path: &mut FieldPath) {
        let entries = unique_entries(node);
        for name in &schema.required {
            if !entries.iter().any(|(k, _)| &k.text == name) {
                self.report(&path.field(name), node, "Required value".to_string());
            }
        }
        let count = entries.len() as u64;
        if let Some(min) = schema.min_properties.filter(|m| count < *m) {
            self.invalid(
                path,
                node,
                &count.to_string(),
                &format!("should have at least {min} properties"),
            );
        }
        if let Some(max) = schema.max_properties.filter(|m| count > *m) {
            self.invalid(
                path,
                node,
                &count.to_string(),
                &format!("should have at most {max} properties"),
            );
        }
        for (key, value) in entries {
            if let Some(sub) = schema.properties.get(&key.text) {
                path.push(crate::PathSeg::Field(key.text.clone()));
                self.check(sub, value, path);
                path.pop();
            } else if let Some(sub) = &schema.additional_properties {
                path.push(crate::PathSeg::Key(key.text.clone()));
                self.check(sub, value, path);
                path.pop();
            }
            // Anything else is an unknown field, which the deserializer reports.
        }
    }

    fn array(&mut self, schema: &Schema, node: &Node, path: &mut FieldPath) {
        let items = seq_of(node);
        let count = items.len() as u64;
        if let Some(min) = schema.min_items.filter(|m| count < *m) {
            self.invalid(
                path,
                node,
                &count.to_string(),
                &format!("should have at least {min} items"),
            );
        }
        if let Some(max) = schema.max_items.filter(|m| count > *m) {
            self.report(
                path,
                node,
                format!("Too many: {count}: must have at most {max} items"),
            );
        }
        if let Some(sub) = &schema.items {
            for (i, item) in items.iter().enumerate() {
                path.push(crate::PathSeg::Index(i));
                self.check(sub, item, path);
                path.pop();
            }
        }
        match schema.list_type {
            Some(ListType::Map) => {
                let item_schema = schema.items.as_deref();
                self.unique_by(items, path, |item| {
                    map_key(item, &schema.list_map_keys, item_schema)
                });
            }
            Some(ListType::Set) => {
                let ty = schema.items.as_ref().and_then(|s| s.ty);
                self.unique_by(items, path, |item| Some(identity(item, ty)));
            }
            Some(ListType::Atomic) | None => {}
        }
    }

    /// Reports each item whose identity (from `key`) an earlier item already has.
    fn unique_by(
        &mut self,
        items: &[Node],
        path: &FieldPath,
        key: impl Fn(&Node) -> Option<String>,
    ) {
        let keys: Vec<Option<String>> = items.iter().map(key).collect();
        for (i, k) in keys.iter().enumerate() {
            let Some(k) = k else { continue };
            if keys[..i].iter().any(|earlier| earlier.as_ref() == Some(k)) {
                self.report(&path.index(i), &items[i], format!("Duplicate value: {k}"));
            }
        }
    }

    fn string(&mut self, schema: &Schema, node: &Node, text: &str, path: &FieldPath) {
        let quoted = go_quote(text);
        if !schema.enum_values.is_empty()
            && !schema.enum_values.iter().any(|v| v.as_str() == Some(text))
        {
            self.report(
                path,
                node,
                format!(
                    "Unsupported value: {quoted}: supported values: {}",
                    supported(schema)
                ),
            );
        }
        let len = text.chars().count() as u64;
        if let Some(min) = schema.min_length.filter(|m| len < *m) {
            self.invalid(
                path,
                node,
                &quoted,
                &format!("should be at least {min} chars long"),
            );
        }
        if let Some(max) = schema.max_length.filter(|m| len > *m) {
            self.report(
                path,
                node,
                format!("Too long: may not be longer than {max}"),
            );
        }
        if let Some(p) = &schema.pattern {
            if !p.regex.is_match(text) {
                self.invalid(path, node, &quoted, &format!("should match '{}'", p.source));
            }
        }
        if schema.format.as_deref() == Some("byte") && !is_base64(text) {
            self.invalid(
                path,
                node,
                &quoted,
                &format!("must be of type byte: {quoted}"),
            );
        }
    }

    fn number(&mut self, schema: &Schema, node: &Node, value: f64, text: &str, path: &FieldPath) {
        let shown_value = text.trim();
        if let Some(min) = schema.minimum {
            let (bad, rel) = if schema.exclusive_minimum {
                (value <= min, "greater than")
            } else {
                (value < min, "greater than or equal to")
            };
            if bad {
                self.invalid(
                    path,
                    node,
                    shown_value,
                    &format!("should be {rel} {}", number_text(min)),
                );
            }
        }
        if let Some(max) = schema.maximum {
            let (bad, rel) = if schema.exclusive_maximum {
                (value >= max, "less than")
            } else {
                (value > max, "less than or equal to")
            };
            if bad {
                self.invalid(
                    path,
                    node,
                    shown_value,
                    &format!("should be {rel} {}", number_text(max)),
                );
            }
        }
        if !schema.enum_values.is_empty()
            && !schema.enum_values.iter().any(|v| v.as_f64() == Some(value))
        {
            self.report(
                path,
                node,
                format!(
                    "Unsupported value: {shown_value}: supported values: {}",
                    supported(schema)
                ),
            );
        }
    }

    fn combinators(&mut self, schema: &Schema, node: &Node, path: &mut FieldPath) {
        for sub in &schema.all_of {
            self.check(sub, node, path);
        }
        if !schema.one_of.is_empty() {
            if let Some(fields) = schema.at_most_one_of() {
                let entries = unique_entries(node);
                let set: Vec<&str> = fields
                    .iter()
                    .copied()
                    .filter(|f| entries.iter().any(|(k, _)| k.text == *f))
                    .collect();
                if set.len() > 1 {
                    let value = format!("\"{}\"", node.type_name());
                    self.report(
                        path,
                        node,
                        format!(
                            "Invalid value: {value}: only one of {} can be set",
                            or_list(&fields)
                        ),
                    );
                }
            } else {
                let valid = schema
                    .one_of
                    .iter()
                    .filter(|s| passes(s, node, path))
                    .count();
                if valid != 1 {
                    let detail = format!("must validate one and only one schema (oneOf). Found {valid} valid alternatives");
                    self.invalid(path, node, &format!("\"{}\"", node.type_name()), &detail);
                }
            }
        }
        if !schema.any_of.is_empty() && !schema.any_of.iter().any(|s| passes(s, node, path)) {
            self.invalid(
                path,
                node,
                &format!("\"{}\"", node.type_name()),
                "must validate at least one schema (anyOf)",
            );
        }
        if let Some(not) = &schema.not {
            if passes(not, node, path) {
                self.invalid(
                    path,
                    node,
                    &format!("\"{}\"", node.type_name()),
                    "must not validate the schema (not)",
                );
            }
        }
    }

    fn rules(&mut self, schema: &Schema, node: &Node, path: &FieldPath) {
        for rule in &schema.validations {
            // A rule we have no check for is skipped; a unit test keeps the table complete.
            let Some(check) = cel::lookup(&rule.rule) else {
                continue;
            };
            let ty = schema.ty.map_or_else(|| node.type_name(), Type::name);
            match check.eval(node) {
                Outcome::Pass => {}
                Outcome::Fail => self.report(
                    path,
                    node,
                    format!("Invalid value: \"{ty}\": {}", rule.message()),
                ),
                Outcome::Error(e) => self.report(
                    path,
                    node,
                    format!(
                        "Invalid value: \"{ty}\": {e} evaluating rule: {}",
                        rule.message()
                    ),
                ),
            }
        }
    }
}

/// Whether `node` satisfies `schema` (used for the generic combinators).
fn passes(schema: &Schema, node: &Node, path: &FieldPath) -> bool {
    let mut scratch = Vec::new();
    Walker::new(&mut scratch).check(schema, node, &mut path.clone());
    scratch.is_empty()
}

/// The path as kube-openapi names it in a message; the root is `body`'s own name.
fn shown(path: &FieldPath) -> String {
    if path.is_root() {
        "<root>".to_string()
    } else {
        path.to_string()
    }
}

fn supported(schema: &Schema) -> String {
    schema
        .enum_values
        .iter()
        .map(|v| v.as_str().map_or_else(|| v.to_string(), go_quote))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `a or b`, `a, b or c`.
fn or_list(fields: &[&str]) -> String {
    match fields.split_last() {
        Some((last, [])) => (*last).to_string(),
        Some((last, init)) => format!("{} or {last}", init.join(", ")),
        None => String::new(),
    }
}

/// A bound as Kubernetes prints it, without a spurious `.0` or exponent for integers.
fn number_text(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.0}")
    } else {
        f.to_string()
    }
}

/// A list-map item's identity: its key fields, rendered like `{"name":"a"}`.
fn map_key(item: &Node, keys: &[String], item_schema: Option<&Schema>) -> Option<String> {
    item.as_map()?;
    let parts: Vec<String> = keys
        .iter()
        .map(|k| {
            let ty = item_schema
                .and_then(|s| s.properties.get(k))
                .and_then(|s| s.ty);
            let v = item
                .get(k)
                .map_or_else(|| "null".to_string(), |v| identity(v, ty));
            format!("{}:{v}", go_quote(k))
        })
        .collect();
    Some(format!("{{{}}}", parts.join(",")))
}

/// A value as JSON would show it once read as `ty`: `80` and `"80"` are one integer.
fn identity(node: &Node, ty: Option<Type>) -> String {
    match (ty, node.resolved()) {
        (Some(Type::Integer), _) if int_value(node).is_some() => {
            int_value(node).unwrap_or_default().to_string()
        }
        (_, Some(Resolved::Bool(b))) if ty != Some(Type::String) => b.to_string(),
        (_, Some(Resolved::Null)) => "null".to_string(),
        (_, Some(_)) => go_quote(node.as_str().unwrap_or_default()),
        (_, None) => format!("\"{}\"", node.type_name()),
    }
}

/// Standard base64 with padding, as Go's `base64.StdEncoding` (the `byte` format) wants.
fn is_base64(s: &str) -> bool {
    let b = s.as_bytes();
    if !b.chunks_exact(4).remainder().is_empty() {
        return false;
    }
    let pad = b.iter().rev().take_while(|c| **c == b'=').count();
    pad <= 2
        && b[..b.len() - pad]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}
