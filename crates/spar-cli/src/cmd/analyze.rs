//! `spar analyze`: problems that only show across resources.

use std::process::ExitCode;

use crate::cmd::input::InputArgs;
use crate::output;

/// Validate, then look across resources for what Istio users trip over.
///
/// Findings carry a stable code and a severity: VirtualServices that point at unknown
/// gateways, hosts or subsets; DestinationRule subsets that select no workload; two
/// VirtualServices claiming one host on one gateway; Gateways whose selector matches no
/// gateway workload; conflicting Gateway servers; ServiceEntry address clashes; STRICT
/// mTLS against a DestinationRule that disables TLS; AuthorizationPolicies naming
/// namespaces or principals that do not exist; Sidecar egress hosts that match nothing;
/// VirtualServices bound to a gateway but not to `mesh` while called from inside the
/// mesh. `spar analyze --list-codes` prints them all.
/// Exit code 0 without errors (warnings allowed), 1 with any error.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,

    /// Print every finding code with its severity and meaning, then exit.
    #[arg(long, exclusive = true)]
    pub list_codes: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if args.list_codes {
        for c in spar_analyze::codes::ALL {
            println!(
                "{}  {:<8} {:<42} {}",
                c.code,
                format!("{:?}", c.severity).to_lowercase(),
                c.name,
                c.summary
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let set = args.input.load()?;
    let mut diags = set.diagnostics().to_vec();
    diags.extend(spar_analyze::analyze(&set));
    output::print(&diags, args.input.output, set.resources().len(), "analyzed")?;
    Ok(output::exit_code(&diags))
}
