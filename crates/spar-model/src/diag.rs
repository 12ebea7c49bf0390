//! Diagnostics: what is wrong, where, in which resource, and how bad.
//!
//! One line per finding, in the form operators grep for:
//! `vs.yaml:14: VirtualService default/reviews: spec.http[0].route[1].weight: must not be negative (got -10)`.

use std::fmt;

use serde::Serialize;

use crate::FieldPath;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// The resource a diagnostic is about: `Kind namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ResourceRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable code for analysis findings (`IST0101`-style); validation uses `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceRef>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_path")]
    pub path: Option<FieldPath>,
    pub message: String,
}

fn ser_path<S: serde::Serializer>(p: &Option<FieldPath>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_str(&p.to_string()),
        None => s.serialize_none(),
    }
}

impl Diagnostic {
    pub fn error(path: FieldPath, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, path, message)
    }

    pub fn warning(path: FieldPath, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, path, message)
    }

    pub fn new(severity: Severity, path: FieldPath, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            code: None,
            file: None,
            line: None,
            resource: None,
            path: (!path.is_root()).then_some(path),
            message: message.into(),
        }
    }

    pub fn with_code(mut self, code: &str) -> Self {
        self.code = Some(code.to_string());
        self
    }

    pub fn with_resource(mut self, r: ResourceRef) -> Self {
        self.resource = Some(r);
        self
    }

    pub fn with_location(mut self, file: Option<&str>, line: Option<u32>) -> Self {
        if self.file.is_none() {
            self.file = file.map(str::to_string);
        }
        if self.line.is_none() {
            self.line = line;
        }
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: ")?,
            (Some(file), None) => write!(f, "{file}: ")?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        if self.severity == Severity::Warning {
            write!(f, "warning: ")?;
        } else if self.severity == Severity::Info {
            write!(f, "info: ")?;
        }
        if let Some(code) = &self.code {
            write!(f, "[{code}] ")?;
        }
        if let Some(r) = &self.resource {
            write!(f, "{r}: ")?;
        }
        if let Some(p) = &self.path {
            write!(f, "{p}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_documented_form() {
        let d = Diagnostic::error(
            FieldPath::parse("spec.http[0].route[1].weight"),
            "must not be negative (got -10)",
        )
        .with_resource(ResourceRef {
            kind: "VirtualService".into(),
            namespace: "default".into(),
            name: "reviews".into(),
        })
        .with_location(Some("vs.yaml"), Some(14));
        assert_eq!(
            d.to_string(),
            "vs.yaml:14: VirtualService default/reviews: spec.http[0].route[1].weight: must not be negative (got -10)"
        );
    }
}
