//! The MPI side of the cluster: starting MPI with `MPI_THREAD_MULTIPLE`, the collective
//! calls (broadcast, barrier, abort) and tagged point-to-point messages, each wait polled with
//! sleeps and bounded by a deadline. Built with the `mpi` feature (the default).

use super::{ClusterError, BYTES_RECEIVED, BYTES_SENT, FOREVER, ROOT};
use mpi::collective::CommunicatorCollectives;
use mpi::environment::Universe;
use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::request::StaticScope;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::Root;
use mpi::Threading;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A started MPI world; MPI is finalised when it is dropped.
pub struct World {
    _universe: Universe,
}

pub(super) fn world() -> SimpleCommunicator {
    SimpleCommunicator::world()
}

/// The MPI library's own description of itself, for `stylemill doctor`.
pub fn library_version() -> Option<String> {
    Some(
        mpi::environment::library_version()
            .unwrap_or_else(|_| "an MPI library that does not state its version".into()),
    )
}

/// Ends the job if MPI is running (the start-up watchdog); otherwise returns, and the caller
/// leaves, which makes the launcher end the job.
pub(super) fn abort_if_started(code: i32) {
    if mpi::environment::is_initialized() && !mpi::environment::is_finalized() {
        world().abort(code);
    }
}

impl World {
    /// Starts MPI; returns the world, this rank, the world's size and the rank on its node.
    pub(super) fn start() -> Result<(World, usize, usize, usize), ClusterError> {
        let (universe, threading) =
            mpi::initialize_with_threading(Threading::Multiple).ok_or(ClusterError::Init)?;
        if threading != Threading::Multiple {
            return Err(ClusterError::Threading(format!("{threading:?}")));
        }
        let world = universe.world();
        let node = world.split_shared(world.rank());
        let (rank, size, local_rank) = (
            world.rank() as usize,
            world.size() as usize,
            node.rank() as usize,
        );
        Ok((
            World {
                _universe: universe,
            },
            rank,
            size,
            local_rank,
        ))
    }

    /// Rank 0's `payload` to every rank.
    pub(super) fn broadcast(&self, is_root: bool, payload: Option<Vec<u8>>) -> Vec<u8> {
        let world = world();
        let root = world.process_at_rank(ROOT as i32);
        let mut length = payload.as_ref().map_or(0, |p| p.len() as u64);
        root.broadcast_into(&mut length);
        let mut buffer = payload.unwrap_or_else(|| vec![0; length as usize]);
        root.broadcast_into(&mut buffer[..]);
        let counter = if is_root {
            &BYTES_SENT
        } else {
            &BYTES_RECEIVED
        };
        counter.fetch_add(8 + length, Ordering::Relaxed);
        buffer
    }

    /// Waits for every rank, sleeping between polls.
    pub(super) fn barrier(&self) {
        let mut pending = Some(world().immediate_barrier());
        patiently(FOREVER, || match pending.take()?.test() {
            Ok(_) => Some(()),
            Err(request) => {
                pending = Some(request);
                None
            }
        });
    }

    pub(super) fn abort(&self, code: i32) -> ! {
        world().abort(code)
    }
}

/// Sends `bytes` to `rank`, giving up after `timeout`. A send to a rank that hangs can be
/// neither completed nor cancelled (MPI cannot cancel a send under way), so the buffer is owned
/// by the request: it is reclaimed when the send completes, and deliberately leaked with the
/// request when it times out, since the job then ends.
pub(super) fn send(
    rank: usize,
    bytes: Vec<u8>,
    tag: i32,
    timeout: Duration,
) -> Result<(), ClusterError> {
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
pub(super) fn receive(rank: usize, timeout: Duration) -> Result<(i32, Vec<u8>), ClusterError> {
    let world = world();
    let process = world.process_at_rank(rank as i32);
    let matched =
        patiently(timeout, || process.immediate_matched_probe()).ok_or(timed_out(rank, timeout))?;
    let (data, status) = matched.matched_receive_vec::<u8>();
    BYTES_RECEIVED.fetch_add(data.len() as u64, Ordering::Relaxed);
    Ok((status.tag(), data))
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

fn timed_out(rank: usize, timeout: Duration) -> ClusterError {
    ClusterError::RankTimeout {
        rank,
        seconds: timeout.as_secs(),
    }
}
