//! Diagnostics: `log` records printed by env_logger (`RUST_LOG`), each line passed through
//! [`crate::redact`], and optionally captured in memory so that a run's log can be written to a
//! separate destination (`--log-to`) when the run ends.

use crate::redact::redact;
use std::io::Write;
use std::sync::Mutex;

/// Lines captured since [`start_capture`], or `None` when nothing is captured.
static CAPTURED: Mutex<Option<Vec<String>>> = Mutex::new(None);

/// Installs the logger (default level `info`) and the redacting panic hook.
pub fn init() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(|out, record| {
            let line = redact(&format!(
                "[{} {:<5}] {}",
                out.timestamp_seconds(),
                record.level(),
                record.args()
            ));
            if let Ok(mut captured) = CAPTURED.lock() {
                if let Some(lines) = captured.as_mut() {
                    lines.push(line.clone());
                }
            }
            writeln!(out, "{line}")
        })
        .init();
    crate::redact::redact_panics();
}

/// Starts capturing log lines (discarding any captured before).
pub fn start_capture() {
    if let Ok(mut captured) = CAPTURED.lock() {
        *captured = Some(Vec::new());
    }
}

/// The lines captured since [`start_capture`], one per line; capturing stops.
pub fn take_captured() -> String {
    let lines = CAPTURED
        .lock()
        .ok()
        .and_then(|mut captured| captured.take())
        .unwrap_or_default();
    lines.iter().map(|line| format!("{line}\n")).collect()
}

/// Adds a line printed outside the logger (the final error) to the captured log.
pub fn note(line: &str) {
    if let Ok(mut captured) = CAPTURED.lock() {
        if let Some(lines) = captured.as_mut() {
            lines.push(line.to_string());
        }
    }
}
