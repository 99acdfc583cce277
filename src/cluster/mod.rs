//! MPI: the world of ranks, broadcasting the plan, sharing the input file with nodes that
//! cannot read it ([`share`]), and the tagged messages ranks exchange, each wait with a deadline.
//! Raw frames never travel: ranks decode and encode their own frames, and only small control
//! messages and encoded segments go to rank 0. Started without an MPI launcher, the process is a
//! world of one rank and MPI is not initialised at all, so a laptop run does not depend on the
//! MPI runtime's daemons.
//!
//! Rank 0 receives from several threads at once (one per remote rank), so MPI is initialised
//! with `MPI_THREAD_MULTIPLE`; each thread takes its own handle on the world communicator.

use mpi::collective::CommunicatorCollectives;
use mpi::environment::Universe;
use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::request::StaticScope;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::Root;
use mpi::Threading;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod share;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot make this node's copy of the input ({detail}); give every rank a path it can read (a shared filesystem), or free space in TMPDIR")]
    NodeCopy { detail: String },
    #[error("MPI could not be initialised; check the MPI installation (OpenMPI: `apt-get install openmpi-bin`) and the launcher's environment")]
    Init,
    #[error("the MPI library only supports {0:?} threading, stylemill needs MPI_THREAD_MULTIPLE; use an MPI built with thread support (OpenMPI 4 and later are)")]
    Threading(Threading),
    #[error("rank {rank} failed: {cause}")]
    RankFailed {
        rank: usize,
        cause: String,
        /// Retrying the same input cannot help (it is corrupt, say).
        poison: bool,
    },
    #[error("rank {rank} made no progress for {seconds} s (it hangs, or its node is lost); the job is stopped: rerun it with the same --work-dir to resume, or raise --rank-timeout")]
    RankTimeout { rank: usize, seconds: u64 },
    #[error("rank {rank} sent a malformed {what}; all ranks must run the same stylemill version")]
    Malformed { rank: usize, what: &'static str },
}

/// The kinds of message ranks exchange (MPI tags). What each carries is the job's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// A rank says who it is.
    Hello = 3,
    /// A rank failed: a byte saying whether the input is at fault, then the reason.
    Failure = 2,
    /// Rank 0 tells the others what comes next (watch mode).
    Announce = 5,
    /// A rank asks rank 0 for chunks (dynamic schedule), and rank 0 assigns them.
    Request = 6,
    Assign = 7,
    /// A rank stylized a frame.
    FrameDone = 8,
    /// A rank's encoded chunk.
    Segment = 9,
    /// A rank finished its work, with its figures.
    Finished = 10,
}

impl Tag {
    const ALL: [Tag; 8] = [
        Tag::Hello,
        Tag::Failure,
        Tag::Announce,
        Tag::Request,
        Tag::Assign,
        Tag::FrameDone,
        Tag::Segment,
        Tag::Finished,
    ];
}

/// Bytes this process sent and received through MPI, for the report.
static BYTES_SENT: AtomicU64 = AtomicU64::new(0);
static BYTES_RECEIVED: AtomicU64 = AtomicU64::new(0);

/// Bytes this process has sent and received through MPI so far.
pub fn traffic() -> (u64, u64) {
    (
        BYTES_SENT.load(Ordering::Relaxed),
        BYTES_RECEIVED.load(Ordering::Relaxed),
    )
}

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
        let counter = if self.is_root() {
            &BYTES_SENT
        } else {
            &BYTES_RECEIVED
        };
        counter.fetch_add(8 + length, Ordering::Relaxed);
        buffer
    }

    /// Rank 0 tells every other rank what comes next (watch mode: the next job, or stop).
    /// Point to point rather than a broadcast, so that waiting ranks sleep between polls
    /// instead of spinning while a watcher is idle.
    pub fn announce(&self, message: &[u8]) {
        for rank in 1..self.size() {
            let _ = send(rank, message.to_vec(), Tag::Announce as i32, FOREVER);
        }
    }

    /// Waits, without deadline, for rank 0's next announcement.
    pub fn await_announcement(&self) -> Result<Vec<u8>, ClusterError> {
        expect_message(ROOT, Tag::Announce, FOREVER)
    }

    /// Waits until every rank has called this (sleeping between polls, not spinning): the
    /// end of a job, after which a node's copy of the input may go.
    pub fn wait_for_all(&self) {
        if self.universe.is_none() {
            return;
        }
        let mut pending = Some(world().immediate_barrier());
        patiently(FOREVER, || match pending.take()?.test() {
            Ok(_) => Some(()),
            Err(request) => {
                pending = Some(request);
                None
            }
        });
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
    BYTES_SENT.fetch_add(bytes.len() as u64, Ordering::Relaxed);
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

/// Receives the next message from `rank`: its tag and bytes.
fn receive(rank: usize, timeout: Duration) -> Result<(i32, Vec<u8>), ClusterError> {
    let world = world();
    let process = world.process_at_rank(rank as i32);
    let matched =
        patiently(timeout, || process.immediate_matched_probe()).ok_or(timed_out(rank, timeout))?;
    let (data, status) = matched.matched_receive_vec::<u8>();
    BYTES_RECEIVED.fetch_add(data.len() as u64, Ordering::Relaxed);
    Ok((status.tag(), data))
}

/// Tells `rank` that this rank failed, and why; `poison` says that retrying the same input
/// cannot help.
pub fn send_failure(rank: usize, cause: &str, poison: bool) {
    let mut message = vec![u8::from(poison)];
    message.extend_from_slice(cause.as_bytes());
    let _ = send(rank, message, Tag::Failure as i32, FOREVER);
}

/// Sends a message of kind `tag` to `rank`, giving up after `timeout`.
pub fn send_message(
    rank: usize,
    tag: Tag,
    bytes: Vec<u8>,
    timeout: Duration,
) -> Result<(), ClusterError> {
    send(rank, bytes, tag as i32, timeout)
}

/// Receives the next message from `rank`: its kind and bytes, or the failure it reported.
pub fn receive_message(rank: usize, timeout: Duration) -> Result<(Tag, Vec<u8>), ClusterError> {
    let (tag, data) = receive(rank, timeout)?;
    if tag == Tag::Failure as i32 {
        return Err(ClusterError::RankFailed {
            rank,
            cause: String::from_utf8_lossy(data.get(1..).unwrap_or_default()).into_owned(),
            poison: data.first() == Some(&1),
        });
    }
    let kind = Tag::ALL
        .into_iter()
        .find(|t| *t as i32 == tag)
        .ok_or_else(|| ClusterError::RankFailed {
            rank,
            cause: format!(
                "unexpected message (tag {tag}); all ranks must run the same stylemill version"
            ),
            poison: false,
        })?;
    Ok((kind, data))
}

/// Receives the next message from `rank`, which must be of kind `wanted`.
pub fn expect_message(
    rank: usize,
    wanted: Tag,
    timeout: Duration,
) -> Result<Vec<u8>, ClusterError> {
    match receive_message(rank, timeout)? {
        (tag, data) if tag == wanted => Ok(data),
        (tag, _) => Err(ClusterError::RankFailed {
            rank,
            cause: format!(
                "sent {tag:?} where {wanted:?} was expected; all ranks must run the same stylemill version"
            ),
            poison: false,
        }),
    }
}
