//! Printing diagnostics as text (one finding per line) or JSON.

use std::io::Write;
use std::process::ExitCode;

use spar_model::{Diagnostic, Severity};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(serde::Serialize)]
struct JsonReport<'a> {
    resources: usize,
    errors: usize,
    warnings: usize,
    diagnostics: &'a [Diagnostic],
}

/// Errors and warnings go to stdout in text mode so they can be piped and grepped;
/// the one-line summary goes to stderr.
pub fn print(
    diags: &[Diagnostic],
    format: Format,
    resources: usize,
    verb: &str,
) -> anyhow::Result<()> {
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diags
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .count();
    let mut out = std::io::stdout().lock();
    match format {
        Format::Text => {
            for d in diags {
                writeln!(out, "{d}")?;
            }
            eprintln!("{verb} {resources} resource(s): {errors} error(s), {warnings} warning(s)");
        }
        Format::Json => {
            let report = JsonReport {
                resources,
                errors,
                warnings,
                diagnostics: diags,
            };
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

pub fn exit_code(diags: &[Diagnostic]) -> ExitCode {
    if diags.iter().any(Diagnostic::is_error) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
