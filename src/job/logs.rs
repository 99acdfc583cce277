//! `--log-to`: a run's log and report written to a destination of their own (a local
//! directory or a blob container), as the reference architecture keeps logs in a storage
//! account that uploaders of videos cannot read.

use super::report::Report;
use super::JobError;
use crate::storage::{store_small_file, Location};

/// Writes the log captured since the run started, and its report if it finished, as
/// `<stem>-<UTC time>.log` and `.report.json` in `destination`.
pub fn publish(
    destination: &Location,
    stem: &str,
    report: Option<&Report>,
) -> Result<(), JobError> {
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
        ))
        .unwrap_or_default();
    let base = format!("{stem}-{stamp}-{}", std::process::id());
    let log = crate::redact::redact(&crate::logging::take_captured());
    let written = store_small_file(destination, &format!("{base}.log"), log.into_bytes())?;
    log::info!("log written to {written}");
    if let Some(report) = report {
        let json = crate::redact::redact(&report.to_json());
        let written = store_small_file(
            destination,
            &format!("{base}.report.json"),
            json.into_bytes(),
        )?;
        log::info!("report written to {written}");
    }
    Ok(())
}

/// A file-name-safe stem for a location: its last name segment without extension.
pub fn stem_of(location: &Location) -> String {
    let shown = location.shown();
    let last = shown.rsplit('/').next().unwrap_or("run");
    let stem = last.rsplit_once('.').map_or(last, |(stem, _)| stem);
    let safe: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() {
        "run".into()
    } else {
        safe
    }
}
