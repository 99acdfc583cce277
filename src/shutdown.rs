//! What SIGINT, SIGTERM and SIGHUP do (Ctrl-C, mpirun ending a failed job, a scheduler's time
//! limit). By default: remove every staging directory, so nothing half-written is left, and
//! exit with status 130. In watch mode the first signal only asks the watcher to stop after the
//! video it is working on; a second one stops at once.
//!
//! It also owns how ffmpeg children are started. A terminal's Ctrl-C goes to its whole
//! foreground process group: a child sharing stylemill's group would die with the first Ctrl-C
//! and take the current video with it. So each child gets a process group of its own, is
//! recorded while it runs, and is killed here when a signal stops stylemill.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

static FINISH_CURRENT_JOB: AtomicBool = AtomicBool::new(false);
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);
/// Set once a signal stops the process at once.
static STOPPING: AtomicBool = AtomicBool::new(false);
/// Process groups of the running children (each child leads its own).
static CHILD_GROUPS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

pub fn install() {
    let installed = ctrlc::set_handler(|| {
        if FINISH_CURRENT_JOB.load(Ordering::SeqCst) && !STOP_REQUESTED.swap(true, Ordering::SeqCst)
        {
            eprintln!("stopping after the current video; press Ctrl-C again to stop now");
            return;
        }
        STOPPING.store(true, Ordering::SeqCst);
        kill_children();
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

/// When a signal is stopping the process, waits for it to exit: a failure that the stop itself
/// caused (its ffmpeg children killed) must be neither reported nor recorded as the input's.
pub fn halt_if_stopping() {
    if STOPPING.load(Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
}

/// Makes `command` start its child in a process group of its own, out of reach of the
/// terminal's Ctrl-C; register a long-running child with [`ChildGroup::register`].
pub fn detach_from_terminal(command: &mut Command) -> &mut Command {
    command.process_group(0)
}

/// A running detached child, killed by a signal that stops stylemill; unregistered on drop.
pub struct ChildGroup(u32);

impl ChildGroup {
    pub fn register(pid: u32) -> ChildGroup {
        child_groups().insert(pid);
        ChildGroup(pid)
    }
}

impl Drop for ChildGroup {
    fn drop(&mut self) {
        child_groups().remove(&self.0);
    }
}

fn child_groups() -> std::sync::MutexGuard<'static, BTreeSet<u32>> {
    CHILD_GROUPS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Kills every registered child before the staging it writes into is removed.
fn kill_children() {
    for &group in child_groups().iter() {
        if let Ok(group) = libc::pid_t::try_from(group) {
            // SAFETY: kill has no memory effects; a negative pid addresses a process group.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
    }
}
