//! Webhook rules for `Telemetry`.
//!
//! The schema checks providers, sampling range, custom tag kinds, reporting intervals and
//! most tag override rules. Istio's webhook adds: an access-log filter must parse as CEL,
//! tag overrides without an operation are UPSERTs and need a value, custom tag names
//! must not be empty, and more than one tracing entry or provider is warned about.

use super::peer_authentication::{check_selector, check_target_refs};
use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::{TagOperation, Telemetry};
use crate::names::is_header_name;
use crate::FieldPath;

pub fn check(spec: &Telemetry, ctx: &Ctx) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let root = ctx.spec();
    check_selector(spec.selector.as_ref(), &root, &mut out);
    check_target_refs(spec.target_ref.as_ref(), &spec.target_refs, &root, &mut out);
    check_access_logging(spec, &root, &mut out);
    check_metrics(spec, &root, &mut out);
    check_tracing(spec, &root, &mut out);
    out
}

fn check_access_logging(spec: &Telemetry, root: &FieldPath, out: &mut Vec<Diagnostic>) {
    for (i, logging) in spec.access_logging.iter().enumerate() {
        let Some(filter) = &logging.filter else {
            continue;
        };
        let path = root
            .field("accessLogging")
            .index(i)
            .field("filter")
            .field("expression");
        let expr = filter.expression.as_deref().unwrap_or("");
        if expr.trim().is_empty() {
            out.push(Diagnostic::error(
                path,
                "filter needs an expression: a CEL condition such as `response.code >= 400`; or \
                 remove filter to log every request",
            ));
        } else if let Err(e) = cel::check_syntax(expr) {
            out.push(Diagnostic::error(
                path,
                format!("not a valid CEL expression: {e}"),
            ));
        }
    }
}

fn check_metrics(spec: &Telemetry, root: &FieldPath, out: &mut Vec<Diagnostic>) {
    for (i, metrics) in spec.metrics.iter().enumerate() {
        for (j, o) in metrics.overrides.iter().enumerate() {
            let tags = root
                .field("metrics")
                .index(i)
                .field("overrides")
                .index(j)
                .field("tagOverrides");
            for (name, tag) in &o.tag_overrides {
                let path = tags.key(name);
                if name.is_empty() {
                    out.push(Diagnostic::warning(
                        path.clone(),
                        "tag override with an empty tag name",
                    ));
                }
                let value = tag.value.as_deref().unwrap_or("");
                match tag.operation.unwrap_or(TagOperation::Upsert) {
                    // No operation means UPSERT, which the schema's rule does not see.
                    TagOperation::Upsert if value.is_empty() => out.push(Diagnostic::error(
                        path.field("value"),
                        "value must be set: a tag override without an operation is an UPSERT; write \
                         the CEL expression for the tag's value, or `operation: REMOVE` to drop the tag",
                    )),
                    TagOperation::Remove if !value.is_empty() => out.push(Diagnostic::error(
                        path.field("value"),
                        "value is only used with operation UPSERT; remove it",
                    )),
                    _ => {}
                }
            }
        }
    }
}

fn check_tracing(spec: &Telemetry, root: &FieldPath, out: &mut Vec<Diagnostic>) {
    if spec.tracing.len() > 1 {
        out.push(Diagnostic::warning(
            root.field("tracing"),
            "more than one tracing entry is not supported by Istio; merge them into one",
        ));
    }
    for (i, tracing) in spec.tracing.iter().enumerate() {
        let path = root.field("tracing").index(i);
        if tracing.providers.len() > 1 {
            out.push(Diagnostic::warning(
                path.field("providers"),
                "more than one tracing provider is not supported by Istio; only one receives spans",
            ));
        }
        for (name, tag) in &tracing.custom_tags {
            let tag_path = path.field("customTags").key(name);
            if name.is_empty() {
                out.push(Diagnostic::error(
                    tag_path.clone(),
                    "custom tag name must not be empty",
                ));
            }
            let header = tag
                .header
                .as_ref()
                .and_then(|h| h.name.as_deref())
                .unwrap_or("");
            let bare = header.strip_prefix(':').unwrap_or(header);
            if !header.is_empty() && !is_header_name(bare) {
                out.push(Diagnostic::warning(
                    tag_path.field("header").field("name"),
                    format!("{header:?} is not a valid HTTP header name, so the tag never gets its value"),
                ));
            }
        }
    }
}

/// Syntax of the Common Expression Language, as `cel-go`'s parser (which Istio calls)
/// accepts it with the standard macros: literals, operators, calls, selections,
/// indexing, lists, maps and messages. Types and functions are not checked; Istio does
/// not check them either.
mod cel {
    const RESERVED: &[&str] = &[
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    ];
    /// cel-go's default bound on nesting.
    const MAX_DEPTH: usize = 250;

    #[derive(Debug, Clone, PartialEq)]
    enum Tok {
        Ident(String),
        Lit,
        Punct(&'static str),
    }

    const PUNCTS: &[&str] = &[
        "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "+", "-", "*", "/", "%", "?", ":", ".",
        ",", "(", ")", "[", "]", "{", "}",
    ];

    /// Checks that `src` parses; the error names the problem and its column.
    pub(super) fn check_syntax(src: &str) -> Result<(), String> {
        let toks = lex(src)?;
        let mut p = Parser {
            toks,
            pos: 0,
            depth: 0,
        };
        p.expr()?;
        match p.toks.get(p.pos) {
            None => Ok(()),
            Some((t, col)) => Err(format!("unexpected {} at column {col}", describe(t))),
        }
    }

    fn describe(t: &Tok) -> String {
        match t {
            Tok::Ident(s) => format!("{s:?}"),
            Tok::Lit => "literal".into(),
            Tok::Punct(p) => format!("{p:?}"),
        }
    }

    fn lex(src: &str) -> Result<Vec<(Tok, usize)>, String> {
        let chars: Vec<char> = src.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let col = i + 1;
            if c.is_whitespace() {
                i += 1;
            } else if c == '/' && chars.get(i + 1) == Some(&'/') {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            } else if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
            {
                i = number(&chars, i)?;
                toks.push((Tok::Lit, col));
            } else if c == '"' || c == '\'' {
                i = string(&chars, i, false)?;
                toks.push((Tok::Lit, col));
            } else if c.is_ascii_alphabetic() || c == '_' {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let quote = chars.get(i).is_some_and(|q| *q == '"' || *q == '\'');
                let lower = word.to_ascii_lowercase();
                if quote && matches!(lower.as_str(), "r" | "b" | "rb" | "br") {
                    i = string(&chars, i, lower.contains('r'))?;
                    toks.push((Tok::Lit, col));
                } else if matches!(word.as_str(), "true" | "false" | "null") {
                    toks.push((Tok::Lit, col));
                } else if word == "in" {
                    toks.push((Tok::Punct("in"), col));
                } else if RESERVED.contains(&word.as_str()) {
                    return Err(format!("reserved word {word:?} at column {col}"));
                } else {
                    toks.push((Tok::Ident(word), col));
                }
            } else {
                let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
                let Some(p) = PUNCTS.iter().find(|p| rest.starts_with(**p)) else {
                    return Err(format!("unexpected character {c:?} at column {col}"));
                };
                toks.push((Tok::Punct(p), col));
                i += p.len();
            }
        }
        Ok(toks)
    }

    /// Integer (decimal or hex, optional `u`) or float literal starting at `i`; returns its end.
    fn number(chars: &[char], start: usize) -> Result<usize, String> {
        let col = start + 1;
        let digits = |mut i: usize, hex: bool| {
            while i < chars.len()
                && (chars[i].is_ascii_digit() || (hex && chars[i].is_ascii_hexdigit()))
            {
                i += 1;
            }
            i
        };
        let hex = chars[start] == '0' && matches!(chars.get(start + 1), Some('x' | 'X'));
        let body_start = if hex { start + 2 } else { start };
        let mut i = digits(body_start, hex);
        if hex && i == body_start {
            return Err(format!("hex literal without digits at column {col}"));
        }
        if !hex {
            let mut float = false;
            if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
                i = digits(i + 1, false);
                float = true;
            }
            if matches!(chars.get(i), Some('e' | 'E')) {
                let j = if matches!(chars.get(i + 1), Some('+' | '-')) {
                    i + 2
                } else {
                    i + 1
                };
                i = digits(j, false);
                if i == j {
                    return Err(format!("exponent without digits at column {col}"));
                }
                float = true;
            }
            if float {
                return Ok(i);
            }
        }
        let body: String = chars[body_start..i].iter().collect();
        let unsigned = matches!(chars.get(i), Some('u' | 'U'));
        // 2^63 itself is allowed because it may be the operand of a unary minus.
        let fits = u64::from_str_radix(&body, if hex { 16 } else { 10 })
            .is_ok_and(|v| unsigned || v <= 1 << 63);
        if !fits {
            return Err(format!("integer literal out of range at column {col}"));
        }
        Ok(if unsigned { i + 1 } else { i })
    }

    /// String literal whose opening quote is at `i`; returns its end.
    fn string(chars: &[char], i: usize, raw: bool) -> Result<usize, String> {
        let col = i + 1;
        let q = chars[i];
        let triple = chars.get(i + 1) == Some(&q) && chars.get(i + 2) == Some(&q);
        let mut j = if triple { i + 3 } else { i + 1 };
        loop {
            let Some(&c) = chars.get(j) else {
                return Err(format!("unterminated string starting at column {col}"));
            };
            if triple && c == q && chars.get(j + 1) == Some(&q) && chars.get(j + 2) == Some(&q) {
                return Ok(j + 3);
            }
            if !triple && c == q {
                return Ok(j + 1);
            }
            if !triple && (c == '\n' || c == '\r') {
                return Err(format!(
                    "newline in string starting at column {col}; use \\n"
                ));
            }
            if c == '\\' && !raw {
                j = escape(chars, j)
                    .ok_or_else(|| format!("invalid escape sequence at column {}", j + 1))?;
            } else {
                j += 1;
            }
        }
    }

    /// Escape sequence starting with the backslash at `i`; returns its end.
    fn escape(chars: &[char], i: usize) -> Option<usize> {
        let hex =
            |n: usize| (1..=n).all(|k| chars.get(i + 1 + k).is_some_and(char::is_ascii_hexdigit));
        match chars.get(i + 1)? {
            '\\' | '?' | '"' | '\'' | '`' | 'a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' => Some(i + 2),
            'x' | 'X' if hex(2) => Some(i + 4),
            'u' if hex(4) => Some(i + 6),
            'U' if hex(8) => Some(i + 10),
            '0'..='3'
                if (2..=3).all(|k| chars.get(i + k).is_some_and(|c| ('0'..='7').contains(c))) =>
            {
                Some(i + 4)
            }
            _ => None,
        }
    }

    struct Parser {
        toks: Vec<(Tok, usize)>,
        pos: usize,
        depth: usize,
    }

    /// What an operand is, as far as the macros care.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Shape {
        /// A bare identifier (`x`).
        Ident,
        /// A dotted name of identifiers only (`a.b.c`), which may start a message literal.
        QualifiedName,
        /// A field selection on anything else (`a[0].b`, `f().b`).
        Select,
        Other,
    }

    impl Parser {
        fn peek(&self) -> Option<&Tok> {
            self.toks.get(self.pos).map(|(t, _)| t)
        }

        fn at(&self, p: &str) -> bool {
            matches!(self.peek(), Some(Tok::Punct(q)) if *q == p)
        }

        fn eat(&mut self, p: &str) -> bool {
            let hit = self.at(p);
            if hit {
                self.pos += 1;
            }
            hit
        }

        fn expect(&mut self, p: &str) -> Result<(), String> {
            if self.eat(p) {
                return Ok(());
            }
            Err(match self.toks.get(self.pos) {
                Some((t, col)) => format!("expected {p:?} at column {col}, found {}", describe(t)),
                None => format!("expected {p:?} but the expression ended"),
            })
        }

        fn unexpected(&self) -> String {
            match self.toks.get(self.pos) {
                Some((t, col)) => format!("unexpected {} at column {col}", describe(t)),
                None => "the expression ends too early".into(),
            }
        }

        fn expr(&mut self) -> Result<Shape, String> {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(format!(
                    "expression nested more than {MAX_DEPTH} levels deep"
                ));
            }
            let mut shape = self.binary(0)?;
            if self.eat("?") {
                self.binary(0)?;
                self.expect(":")?;
                self.expr()?;
                shape = Shape::Other;
            }
            self.depth -= 1;
            Ok(shape)
        }

        /// Binary operators by precedence level, loosest first.
        fn binary(&mut self, level: usize) -> Result<Shape, String> {
            const LEVELS: &[&[&str]] = &[
                &["||"],
                &["&&"],
                &["==", "!=", "<", "<=", ">", ">=", "in"],
                &["+", "-"],
                &["*", "/", "%"],
            ];
            let Some(ops) = LEVELS.get(level) else {
                return self.unary();
            };
            let mut shape = self.binary(level + 1)?;
            while ops.iter().any(|op| self.at(op)) {
                self.pos += 1;
                self.binary(level + 1)?;
                shape = Shape::Other;
            }
            Ok(shape)
        }

        fn unary(&mut self) -> Result<Shape, String> {
            let mut prefixed = false;
            while self.eat("!") || self.eat("-") {
                prefixed = true;
            }
            let shape = self.member()?;
            Ok(if prefixed { Shape::Other } else { shape })
        }

        fn member(&mut self) -> Result<Shape, String> {
            let mut shape = self.primary()?;
            loop {
                if self.eat(".") {
                    let Some(Tok::Ident(name)) = self.peek().cloned() else {
                        return Err(self.unexpected());
                    };
                    self.pos += 1;
                    if self.eat("(") {
                        let args = self.args(")")?;
                        check_macro(&name, &args, true)?;
                        shape = Shape::Other;
                    } else {
                        shape = if matches!(shape, Shape::Ident | Shape::QualifiedName) {
                            Shape::QualifiedName
                        } else {
                            Shape::Select
                        };
                    }
                } else if self.eat("[") {
                    self.expr()?;
                    self.expect("]")?;
                    shape = Shape::Other;
                } else if matches!(shape, Shape::Ident | Shape::QualifiedName) && self.eat("{") {
                    self.field_inits()?;
                    shape = Shape::Other;
                } else {
                    return Ok(shape);
                }
            }
        }

        fn primary(&mut self) -> Result<Shape, String> {
            let leading_dot = self.eat(".");
            match self.peek().cloned() {
                Some(Tok::Ident(name)) => {
                    self.pos += 1;
                    if self.eat("(") {
                        let args = self.args(")")?;
                        check_macro(&name, &args, false)?;
                        return Ok(Shape::Other);
                    }
                    Ok(Shape::Ident)
                }
                _ if leading_dot => Err(self.unexpected()),
                Some(Tok::Lit) => {
                    self.pos += 1;
                    Ok(Shape::Other)
                }
                Some(Tok::Punct("(")) => {
                    self.pos += 1;
                    self.expr()?;
                    self.expect(")")?;
                    Ok(Shape::Other)
                }
                Some(Tok::Punct("[")) => {
                    self.pos += 1;
                    self.args("]")?;
                    Ok(Shape::Other)
                }
                Some(Tok::Punct("{")) => {
                    self.pos += 1;
                    while !self.eat("}") {
                        self.expr()?;
                        self.expect(":")?;
                        self.expr()?;
                        if !self.eat(",") {
                            self.expect("}")?;
                            break;
                        }
                    }
                    Ok(Shape::Other)
                }
                _ => Err(self.unexpected()),
            }
        }

        /// Comma-separated expressions up to `close` (a trailing comma is allowed only in
        /// lists, as in CEL); returns their shapes.
        fn args(&mut self, close: &str) -> Result<Vec<Shape>, String> {
            let mut shapes = Vec::new();
            while !self.eat(close) {
                shapes.push(self.expr()?);
                if !self.eat(",") {
                    self.expect(close)?;
                    break;
                }
                if close == ")" && self.at(")") {
                    return Err(self.unexpected());
                }
            }
            Ok(shapes)
        }

        /// `field: value, ...}` of a message literal.
        fn field_inits(&mut self) -> Result<(), String> {
            while !self.eat("}") {
                let Some(Tok::Ident(_)) = self.peek() else {
                    return Err(self.unexpected());
                };
                self.pos += 1;
                self.expect(":")?;
                self.expr()?;
                if !self.eat(",") {
                    return self.expect("}");
                }
            }
            Ok(())
        }
    }

    /// The standard macros are expanded while parsing, so misuse is a syntax error.
    fn check_macro(name: &str, args: &[Shape], receiver: bool) -> Result<(), String> {
        let comprehension = match (name, args.len(), receiver) {
            ("has", 1, false) => {
                return match args[0] {
                    Shape::QualifiedName | Shape::Select => Ok(()),
                    _ => Err("has() takes a field selection, e.g. has(request.headers.x)".into()),
                }
            }
            ("all" | "exists" | "exists_one" | "filter" | "map", 2, true) => true,
            ("map", 3, true) => true,
            _ => false,
        };
        if comprehension && args[0] != Shape::Ident {
            return Err(format!(
                "the first argument of {name}() must be a variable name"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "telemetry_tests.rs"]
mod tests;
