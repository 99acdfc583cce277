//! What SIGINT, SIGTERM and SIGHUP do (Ctrl-C, mpirun ending a failed job, a scheduler's time
//! limit). By default: remove every staging directory, so nothing half-written is left, and
//! exit with status 130. In watch mode the first signal only asks the watcher to stop after the
//! video it is working on; a second one stops at once.

use std::sync::atomic::{AtomicBool, Ordering};

static FINISH_CURRENT_JOB: AtomicBool = AtomicBool::new(false);
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

pub fn install() {
    let installed = ctrlc::set_handler(|| {
        if FINISH_CURRENT_JOB.load(Ordering::SeqCst) && !STOP_REQUESTED.swap(true, Ordering::SeqCst)
        {
            eprintln!("stopping after the current video; press Ctrl-C again to stop now");
            return;
        }
        if crate::storage::remove_all_staging() {
            eprintln!("error: interrupted before the output was complete; nothing was written to the output path");
        }
        std::process::exit(130);
    });
    if let Err(error) = installed {
        log::warn!("cannot install the termination handler: {error}");
    }
}

/// From now on, the first signal lets the current job finish (see [`stop_requested`]).
pub fn finish_current_job_on_signal() {
    FINISH_CURRENT_JOB.store(true, Ordering::SeqCst);
}

/// Whether a signal asked the process to stop after its current job.
pub fn stop_requested() -> bool {
    STOP_REQUESTED.load(Ordering::SeqCst)
}
