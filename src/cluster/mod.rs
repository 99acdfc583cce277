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
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::Root;
use mpi::Threading;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("MPI could not be initialised; check the MPI installation (OpenMPI: `apt-get install openmpi-bin`) and the launcher's environment")]
    Init,
    #[error("the MPI library only supports {0:?} threading, stylemill needs MPI_THREAD_MULTIPLE; use an MPI built with thread support (OpenMPI 4 and later are)")]
    Threading(Threading),
    #[error("rank {rank} failed: {cause}")]
    RankFailed { rank: usize, cause: String },
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

    /// Ends every rank of the job now (after the caller has reported the error and cleaned up).
    pub fn abort(&self, code: i32) -> ! {
        if self.universe.is_none() {
            std::process::exit(code);
        }
        world().abort(code)
    }
}

/// Polls `attempt` until it succeeds, sleeping between tries. MPI implementations busy-poll
/// inside blocking calls, so a thread waiting for the next frame would take a whole core from
/// the engine; a frame takes far longer to stylize than the few hundred microseconds of delay.
fn patiently<T>(mut attempt: impl FnMut() -> Option<T>) -> T {
    let mut pause = Duration::from_micros(20);
    loop {
        if let Some(done) = attempt() {
            return done;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

const MAX_PAUSE: Duration = Duration::from_millis(1);

fn send(rank: usize, bytes: &[u8], tag: i32) {
    let world = world();
    let process = world.process_at_rank(rank as i32);
    mpi::request::scope(|scope| {
        let mut pending = Some(process.immediate_send_with_tag(scope, bytes, tag));
        patiently(|| match pending.take()?.test() {
            Ok(_) => Some(()),
            Err(request) => {
                pending = Some(request);
                None
            }
        })
    });
}

/// Sends a frame's pixels to `rank`.
pub fn send_frame(rank: usize, frame: &Frame) {
    send(rank, &frame.data, TAG_FRAME);
}

/// Tells `rank` that this rank failed, and why.
pub fn send_failure(rank: usize, cause: &str) {
    send(rank, cause.as_bytes(), TAG_FAILURE);
}

/// Receives the next frame of `size` from `rank`, or the failure it reported.
pub fn receive_frame(rank: usize, size: FrameSize) -> Result<Frame, ClusterError> {
    let world = world();
    let process = world.process_at_rank(rank as i32);
    let (data, status) =
        patiently(|| process.immediate_matched_probe()).matched_receive_vec::<u8>();
    if status.tag() == TAG_FAILURE {
        return Err(ClusterError::RankFailed {
            rank,
            cause: String::from_utf8_lossy(&data).into_owned(),
        });
    }
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
