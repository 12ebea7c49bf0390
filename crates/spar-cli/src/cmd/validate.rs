//! `spar validate`: each resource on its own, as Istio's validating webhook sees it.

use std::process::ExitCode;

use crate::cmd::input::InputArgs;
use crate::output;

/// Check Istio and Kubernetes resources the way Istio's validating webhook does.
///
/// Every error names the file, line, resource, field path and what is wrong, e.g.
/// `vs.yaml:14: VirtualService default/reviews: spec.http[0].route[1].weight: must not
/// be negative (got -10)`. Unknown fields are warnings (like `kubectl --validate=warn`);
/// unknown kinds are errors. The 2019 APIs (authentication.istio.io Policy/MeshPolicy,
/// rbac.istio.io) are accepted with a deprecation warning that shows their modern form.
/// Exit code 0 when everything is valid (warnings allowed), 1 when anything is invalid.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let set = args.input.load()?;
    let diags = set.diagnostics().to_vec();
    output::print(
        &diags,
        args.input.output,
        set.resources().len(),
        "validated",
    )?;
    Ok(output::exit_code(&diags))
}
