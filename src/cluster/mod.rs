//! MPI: the world of ranks, their roles (rank 0 coordinates and also computes), broadcasting the
//! plan, and moving frames between ranks. All data moves over MPI; no shared filesystem is
//! assumed. Started without an MPI launcher, the process is a world of one rank and MPI is not
//! initialised at all, so a laptop run does not depend on the MPI runtime's daemons.
//!
//! Frames are sent from several threads of rank 0 at once (a feeder and a collector per
//! remote rank), so MPI is initialised with `MPI_THREAD_MULTIPLE`; each thread takes its own
//! handle on the world communicator.

use crate::frame::{Frame, FrameSize};
use mpi::environment::Universe;
use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::request::StaticScope;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::Root;
use mpi::Threading;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("MPI could not be initialised; check the MPI installation (OpenMPI: `apt-get install openmpi-bin`) and the launcher's environment")]
    Init,
    #[error("the MPI library only supports {0:?} threading, stylemill needs MPI_THREAD_MULTIPLE; use an MPI built with thread support (OpenMPI 4 and later are)")]
    Threading(Threading),
    #[error("rank {rank} failed: {cause}")]
    RankFailed { rank: usize, cause: String },
    #[error("rank {rank} made no progress for {seconds} s (it hangs, or its node is lost); the job is stopped: rerun it with the same --work-dir to resume, or raise --rank-timeout")]
    RankTimeout { rank: usize, seconds: u64 },
    #[error("rank {rank} sent {got} bytes for a frame of {size} ({expected} bytes); all ranks must run the same stylemill version")]
    BadFrame {
        rank: usize,
        got: usize,
        expected: usize,
        size: FrameSize,
    },
}

/// Message tags.
const TAG_FRAME: i32 = 1;
const TAG_FAILURE: i32 = 2;
const TAG_HELLO: i32 = 3;
const TAG_ANNOUNCE: i32 = 5;
/// A stylized frame: its compute time (f64, little-endian), then its pixels.
const TAG_RESULT: i32 = 4;

/// The MPI world this process belongs to.
pub struct Cluster {
    /// `None` when started without a launcher.
    universe: Option<Universe>,
    rank: usize,
    size: usize,
    /// This rank's index among the ranks on its node (from MPI's shared-memory split, so it
    /// is right under mpirun, srun and Azure ML alike).
    local_rank: usize,
}

/// Environment variables that MPI launchers (mpirun/mpiexec of OpenMPI, MPICH, Intel MPI,
/// MVAPICH, and srun through PMI or PMIx) set for the processes they start.
const LAUNCHER_VARIABLES: [&str; 6] = [
    "OMPI_COMM_WORLD_SIZE",
    "PMIX_RANK",
    "PMI_RANK",
    "PMI_SIZE",
    "MPI_LOCALNRANKS",
    "MV2_COMM_WORLD_SIZE",
];

/// Whether an MPI launcher started this process.
pub fn launched_by_mpi() -> bool {
    LAUNCHER_VARIABLES
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

pub const ROOT: usize = 0;

fn world() -> SimpleCommunicator {
    SimpleCommunicator::world()
}

impl Cluster {
    pub fn init() -> Result<Cluster, ClusterError> {
        if !launched_by_mpi() {
            log::debug!("no MPI launcher: running as a single rank");
            return Ok(Cluster {
                universe: None,
                rank: ROOT,
                size: 1,
                local_rank: 0,
            });
        }
        let (universe, threading) =
            mpi::initialize_with_threading(Threading::Multiple).ok_or(ClusterError::Init)?;
        if threading != Threading::Multiple {
            return Err(ClusterError::Threading(threading));
        }
        let world = universe.world();
        let node = world.split_shared(world.rank());
        Ok(Cluster {
            rank: world.rank() as usize,
            size: world.size() as usize,
            local_rank: node.rank() as usize,
            universe: Some(universe),
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    pub fn is_root(&self) -> bool {
        self.rank == ROOT
    }

    /// Rank 0 passes `Some(bytes)`, every other rank `None`; all get rank 0's bytes.
    pub fn broadcast(&self, payload: Option<Vec<u8>>) -> Vec<u8> {
        if self.universe.is_none() {
            return payload.expect("the only rank is rank 0");
        }
        let world = world();
        let root = world.process_at_rank(ROOT as i32);
        let mut length = payload.as_ref().map_or(0, |p| p.len() as u64);
        root.broadcast_into(&mut length);
        let mut buffer = payload.unwrap_or_else(|| vec![0; length as usize]);
        root.broadcast_into(&mut buffer[..]);
        buffer
    }

    /// Rank 0 tells every other rank what comes next (watch mode: the next job, or stop).
    /// Point to point rather than a broadcast, so that waiting ranks sleep between polls
    /// instead of spinning while a watcher is idle.
    pub fn announce(&self, message: &[u8]) {
        for rank in 1..self.size() {
            let _ = send(rank, message.to_vec(), TAG_ANNOUNCE, FOREVER);
        }
    }

    /// Waits, without deadline, for rank 0's next announcement.
    pub fn await_announcement(&self) -> Result<Vec<u8>, ClusterError> {
        expect(ROOT, receive(ROOT, FOREVER)?, TAG_ANNOUNCE)
    }

    /// Ends every rank of the job now (after the caller has reported the error and cleaned up).
    pub fn abort(&self, code: i32) -> ! {
        if self.universe.is_none() {
            std::process::exit(code);
        }
        world().abort(code)
    }
}

/// Ends the job when the start-up of a multi-rank job stalls: MPI's initialisation and the
/// broadcast of the plan are collective calls without deadlines, so a rank that hangs before
/// taking part would block every other rank forever. Armed with a deadline, paused while rank 0
/// works alone (probing the input), disarmed when dropped.
pub struct Watchdog {
    timeout: Duration,
    /// The deadline, or `None` while paused.
    deadline: Arc<Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
}

impl Watchdog {
    pub fn start(timeout: Duration) -> Watchdog {
        let deadline = Arc::new(Mutex::new(Some(Instant::now() + timeout)));
        let stop = Arc::new(AtomicBool::new(false));
        let (watched, stopped) = (deadline.clone(), stop.clone());
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            if stopped.load(Ordering::SeqCst) {
                return;
            }
            let expired = watched
                .lock()
                .map(|d| d.is_some_and(|d| Instant::now() >= d))
                .unwrap_or(false);
            if expired {
                eprintln!(
                    "error: the ranks of this job did not all start within {} s (a rank hangs, or its node is lost); the job is stopped: rerun it, or raise --rank-timeout",
                    timeout.as_secs()
                );
                if mpi::environment::is_initialized() && !mpi::environment::is_finalized() {
                    world().abort(1);
                }
                // Still inside MPI's initialisation: leaving makes the launcher end the job.
                std::process::exit(1);
            }
        });
        Watchdog {
            timeout,
            deadline,
            stop,
        }
    }

    /// Stops the clock while this rank works on its own.
    pub fn pause(&self) {
        if let Ok(mut deadline) = self.deadline.lock() {
            *deadline = None;
        }
    }

    /// Restarts the clock with the full timeout.
    pub fn rearm(&self) {
        if let Ok(mut deadline) = self.deadline.lock() {
            *deadline = Some(Instant::now() + self.timeout);
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// This machine's host name, for reports.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Polls `attempt` until it succeeds or `timeout` passes, sleeping between tries. MPI
/// implementations busy-poll inside blocking calls, so a thread waiting for the next frame would
/// take a whole core from the engine; a frame takes far longer to stylize than the few hundred
/// microseconds of delay.
fn patiently<T>(timeout: Duration, mut attempt: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(20);
    loop {
        if let Some(done) = attempt() {
            return Some(done);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

const MAX_PAUSE: Duration = Duration::from_millis(1);

/// No deadline: for messages whose sender is watched by another deadline.
pub const FOREVER: Duration = Duration::from_secs(u64::MAX / 4);

fn timed_out(rank: usize, timeout: Duration) -> ClusterError {
    ClusterError::RankTimeout {
        rank,
        seconds: timeout.as_secs(),
    }
}

/// Sends `bytes` to `rank`, giving up after `timeout`. A send to a rank that hangs can be
/// neither completed nor cancelled (MPI cannot cancel a send under way), so the buffer is owned
/// by the request: it is reclaimed when the send completes, and deliberately leaked with the
/// request when it times out, since the job then ends.
fn send(rank: usize, bytes: Vec<u8>, tag: i32, timeout: Duration) -> Result<(), ClusterError> {
    let world = world();
    let process = world.process_at_rank(rank as i32);
    let buffer: &'static mut [u8] = Box::leak(bytes.into_boxed_slice());
    let owned = buffer as *mut [u8];
    let mut pending = Some(process.immediate_send_with_tag(StaticScope, &*buffer, tag));
    patiently(timeout, || match pending.take()?.test() {
        Ok(_) => Some(()),
        Err(request) => {
            pending = Some(request);
            None
        }
    });
    match pending {
        None => {
            // SAFETY: the send completed, so MPI no longer reads the buffer leaked above.
            drop(unsafe { Box::from_raw(owned) });
            Ok(())
        }
        Some(request) => {
            std::mem::forget(request);
            Err(timed_out(rank, timeout))
        }
    }
}

/// Receives the next message from `rank`: its tag and bytes, and how long copying it took.
fn receive_timed(
    rank: usize,
    timeout: Duration,
) -> Result<((i32, Vec<u8>), Duration), ClusterError> {
    let world = world();
    let process = world.process_at_rank(rank as i32);
    let matched =
        patiently(timeout, || process.immediate_matched_probe()).ok_or(timed_out(rank, timeout))?;
    let start = Instant::now();
    let (data, status) = matched.matched_receive_vec::<u8>();
    Ok(((status.tag(), data), start.elapsed()))
}

fn receive(rank: usize, timeout: Duration) -> Result<(i32, Vec<u8>), ClusterError> {
    receive_timed(rank, timeout).map(|(message, _)| message)
}

/// A stylized frame as a rank sends it back.
pub struct StylizedFrame {
    pub frame: Frame,
    /// Seconds the rank took to compute it.
    pub compute_seconds: f64,
    /// Time rank 0 spent copying the message.
    pub copy_time: Duration,
}

/// Sends a frame's pixels to `rank`.
pub fn send_frame(rank: usize, frame: Frame, timeout: Duration) -> Result<(), ClusterError> {
    send(rank, frame.data, TAG_FRAME, timeout)
}

/// Sends a stylized frame and the seconds it took to compute.
pub fn send_result(rank: usize, frame: &Frame, seconds: f64) -> Result<(), ClusterError> {
    let mut message = Vec::with_capacity(8 + frame.data.len());
    message.extend_from_slice(&seconds.to_le_bytes());
    message.extend_from_slice(&frame.data);
    send(rank, message, TAG_RESULT, FOREVER)
}

/// Tells `rank` that this rank failed, and why.
pub fn send_failure(rank: usize, cause: &str) {
    let _ = send(rank, cause.as_bytes().to_vec(), TAG_FAILURE, FOREVER);
}

/// Tells `rank` who this rank is (its host and engine), as text.
pub fn send_hello(rank: usize, about: &str) {
    let _ = send(rank, about.as_bytes().to_vec(), TAG_HELLO, FOREVER);
}

/// What a rank sent: a message of the expected kind, or its failure.
fn expect(rank: usize, (tag, data): (i32, Vec<u8>), wanted: i32) -> Result<Vec<u8>, ClusterError> {
    match tag {
        TAG_FAILURE => Err(ClusterError::RankFailed {
            rank,
            cause: String::from_utf8_lossy(&data).into_owned(),
        }),
        tag if tag == wanted => Ok(data),
        tag => Err(ClusterError::RankFailed {
            rank,
            cause: format!(
                "unexpected message (tag {tag}); all ranks must run the same stylemill version"
            ),
        }),
    }
}

fn frame_of(rank: usize, data: Vec<u8>, size: FrameSize) -> Result<Frame, ClusterError> {
    if data.len() != size.rgb_bytes() {
        return Err(ClusterError::BadFrame {
            rank,
            got: data.len(),
            expected: size.rgb_bytes(),
            size,
        });
    }
    Ok(Frame::new(size, data))
}

/// Receives the next frame of `size` from `rank`, or the failure it reported.
pub fn receive_frame(
    rank: usize,
    size: FrameSize,
    timeout: Duration,
) -> Result<Frame, ClusterError> {
    let data = expect(rank, receive(rank, timeout)?, TAG_FRAME)?;
    frame_of(rank, data, size)
}

/// Receives a stylized frame and its compute seconds from `rank`, or the failure it reported.
pub fn receive_result(
    rank: usize,
    size: FrameSize,
    timeout: Duration,
) -> Result<StylizedFrame, ClusterError> {
    let (message, copy_time) = receive_timed(rank, timeout)?;
    let mut data = expect(rank, message, TAG_RESULT)?;
    if data.len() < 8 {
        return Err(ClusterError::BadFrame {
            rank,
            got: data.len(),
            expected: size.rgb_bytes() + 8,
            size,
        });
    }
    let pixels = data.split_off(8);
    Ok(StylizedFrame {
        frame: frame_of(rank, pixels, size)?,
        compute_seconds: f64::from_le_bytes(data.try_into().expect("8 bytes")),
        copy_time,
    })
}

/// Receives what `rank` says about itself.
pub fn receive_hello(rank: usize, timeout: Duration) -> Result<String, ClusterError> {
    let data = expect(rank, receive(rank, timeout)?, TAG_HELLO)?;
    Ok(String::from_utf8_lossy(&data).into_owned())
}
