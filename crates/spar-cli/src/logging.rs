//! The process's log filter, changeable while it runs: `spar proxy`'s admin `/logging`
//! (Envoy's) sets it. `RUST_LOG` gives the starting filter (default `info`).

use std::sync::{Mutex, OnceLock};

use tracing_subscriber::EnvFilter;

type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

struct Control {
    reload: Reload,
    /// The filter in force, as text (EnvFilter does not print back what it was given).
    spec: Mutex<String>,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

/// Logs to standard error, filtered by `RUST_LOG` (default `info`).
pub fn init() {
    let spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| EnvFilter::try_new(s).is_ok())
        .unwrap_or_else(|| "info".to_string());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(EnvFilter::new(&spec))
        .with_filter_reloading();
    let handle = builder.reload_handle();
    builder.init();
    let _ = CONTROL.set(Control {
        reload: Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())),
        spec: Mutex::new(spec),
    });
}

/// The filter in force.
pub fn current() -> String {
    CONTROL
        .get()
        .map(|c| c.spec.lock().unwrap_or_else(|p| p.into_inner()).clone())
        .unwrap_or_default()
}

/// Applies `change`: a bare level (`debug`) replaces the whole filter; `target=level`
/// directives (comma-separated) are added to it, replacing earlier ones for the same target.
/// Returns the filter now in force.
pub fn change(change: &str) -> Result<String, String> {
    let control = CONTROL
        .get()
        .ok_or_else(|| "logging is not initialized".to_string())?;
    let mut spec = control.spec.lock().unwrap_or_else(|p| p.into_inner());
    let next = merge(&spec, change)?;
    let filter = EnvFilter::try_new(&next).map_err(|e| format!("{change:?}: {e}"))?;
    (control.reload)(filter).map_err(|e| format!("cannot change the log filter: {e}"))?;
    *spec = next.clone();
    Ok(next)
}

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

fn merge(current: &str, change: &str) -> Result<String, String> {
    let level = |l: &str| -> Result<String, String> {
        let l = l.trim().to_ascii_lowercase();
        // Envoy's names for the two levels tracing calls differently.
        let l = match l.as_str() {
            "critical" => "error".to_string(),
            "warning" => "warn".to_string(),
            _ => l,
        };
        if LEVELS.contains(&l.as_str()) {
            Ok(l)
        } else {
            Err(format!(
                "unknown log level {l:?}: use one of trace, debug, info, warn, error, critical, off"
            ))
        }
    };
    let mut directives: Vec<String> = current
        .split(',')
        .filter(|d| !d.trim().is_empty())
        .map(str::to_string)
        .collect();
    for part in change.split(',').filter(|p| !p.trim().is_empty()) {
        match part.split_once('=') {
            None => directives = vec![level(part)?],
            Some((target, l)) => {
                let l = level(l)?;
                let target = target.trim();
                directives.retain(|d| d.split_once('=').is_none_or(|(t, _)| t != target));
                directives.push(format!("{target}={l}"));
            }
        }
    }
    Ok(directives.join(","))
}

#[cfg(test)]
mod tests {
    use super::merge;

    #[test]
    fn levels_replace_and_targets_add() {
        assert_eq!(merge("info", "debug").unwrap(), "debug");
        assert_eq!(
            merge("info", "spar_proxy=debug").unwrap(),
            "info,spar_proxy=debug"
        );
        assert_eq!(
            merge("info,spar_proxy=debug", "spar_proxy=warning,h2=critical").unwrap(),
            "info,spar_proxy=warn,h2=error"
        );
        assert!(merge("info", "loud").is_err());
    }
}
