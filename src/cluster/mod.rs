//! MPI: the world of ranks, broadcasting the plan, sharing the input file with nodes that
//! cannot read it ([`share`]), and the tagged messages ranks exchange, each wait with a deadline.
//! Raw frames never travel: ranks decode and encode their own frames, and only small control
//! messages and encoded segments go to rank 0. Started without an MPI launcher, the process is a
//! world of one rank and MPI is not initialised at all, so a laptop run does not depend on the
//! MPI runtime's daemons.
//!
//! Rank 0 receives from several threads at once (one per remote rank), so MPI is initialised
//! with `MPI_THREAD_MULTIPLE`; each thread takes its own handle on the world communicator.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use world::{receive, send, World};

#[cfg(feature = "mpi")]
mod share;
#[cfg(not(feature = "mpi"))]
#[path = "single_world.rs"]
mod world;
#[cfg(feature = "mpi")]
#[path = "mpi_world.rs"]
mod world;

pub use world::library_version;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot make this node's copy of the input ({detail}); give every rank a path it can read (a shared filesystem), or free space in TMPDIR")]
    NodeCopy { detail: String },
    #[error("MPI could not be initialised; check the MPI installation (OpenMPI: `apt-get install openmpi-bin`) and the launcher's environment")]
    Init,
    #[error("the MPI library only supports {0} threading, stylemill needs MPI_THREAD_MULTIPLE; use an MPI built with thread support (OpenMPI 4 and MPICH 3.2 and later are)")]
    Threading(String),
    #[error("this stylemill was built without MPI (--no-default-features) but started by an MPI launcher; run it without mpirun or srun, or build it with MPI (the default features) to run across ranks")]
    BuiltWithoutMpi,
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
pub(crate) static BYTES_SENT: AtomicU64 = AtomicU64::new(0);
pub(crate) static BYTES_RECEIVED: AtomicU64 = AtomicU64::new(0);

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
    world: Option<World>,
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

impl Cluster {
    pub fn init() -> Result<Cluster, ClusterError> {
        if !launched_by_mpi() {
            log::debug!("no MPI launcher: running as a single rank");
            return Ok(Cluster {
                world: None,
                rank: ROOT,
                size: 1,
                local_rank: 0,
            });
        }
        let (world, rank, size, local_rank) = World::start()?;
        Ok(Cluster {
            world: Some(world),
            rank,
            size,
            local_rank,
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
        match &self.world {
            None => payload.expect("the only rank is rank 0"),
            Some(world) => world.broadcast(self.is_root(), payload),
        }
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
        if let Some(world) = &self.world {
            world.barrier();
        }
    }

    /// Ends every rank of the job now (after the caller has reported the error and cleaned up).
    pub fn abort(&self, code: i32) -> ! {
        match &self.world {
            None => std::process::exit(code),
            Some(world) => world.abort(code),
        }
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
                world::abort_if_started(1);
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

/// No deadline: for messages whose sender is watched by another deadline.
pub const FOREVER: Duration = Duration::from_secs(u64::MAX / 4);

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
