//! Getting the input to every rank, each node fetching it at most once. A rank that can read
//! rank 0's input path and finds the same file there (a shared filesystem: Slurm clusters,
//! Azure ML mounts) reads it directly. On a node where some rank cannot, the first such rank
//! receives the compressed file from rank 0 over MPI (a broadcast among rank 0 and those nodes
//! only, in pieces) into node-local staging, and the node's ranks read that copy. Raw frames
//! never travel.

use super::world::world;
use super::{Cluster, ClusterError, BYTES_RECEIVED, BYTES_SENT, ROOT};
use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::topology::{Color, Communicator};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// Bytes per broadcast piece: the whole file is never in memory.
const PIECE: usize = 16 << 20;

impl Cluster {
    /// Makes rank 0's input file `path` readable on this rank; `readable` says whether this
    /// rank reads the same file at that path. Collective: every rank calls it. Returns the
    /// path this rank reads: its own, or the node's copy in the receiving rank's `staging`
    /// (`None` where this rank has no staging directory, as on rank 0).
    pub fn share_file(
        &self,
        path: &Path,
        readable: bool,
        staging: Option<&Path>,
    ) -> Result<PathBuf, ClusterError> {
        if self.world.is_none() {
            return Ok(path.to_path_buf());
        }
        let world = world();
        let node = world.split_shared(world.rank());
        // The node's receiving rank: the first one that cannot read the file (never rank 0).
        let mut receiver = i32::MAX;
        let candidate = if readable { i32::MAX } else { node.rank() };
        node.all_reduce_into(&candidate, &mut receiver, SystemOperation::min());
        let node_lacks = receiver != i32::MAX;
        let receives = node_lacks && node.rank() == receiver;
        let color = if self.is_root() || receives {
            Color::with_value(1)
        } else {
            Color::undefined()
        };
        let mut copy: Result<Option<PathBuf>, String> = Ok(None);
        if let Some(group) = world.split_by_color(color) {
            if group.size() > 1 {
                copy = self.broadcast_file(&group, path, staging);
            }
            if let Ok(Some(copy)) = &copy {
                log::info!(
                    "rank {}: this node cannot read {}; received a copy into {}",
                    self.rank,
                    path.display(),
                    copy.display()
                );
            }
        }
        // The node's receiving rank tells the others where its copy is (empty: it failed).
        let mut shared = match &copy {
            Ok(Some(copy)) => copy.display().to_string().into_bytes(),
            _ => Vec::new(),
        };
        if node_lacks {
            let mut length = shared.len() as u64;
            let leader = node.process_at_rank(receiver);
            leader.broadcast_into(&mut length);
            shared.resize(length as usize, 0);
            leader.broadcast_into(&mut shared[..]);
        }
        match copy {
            Err(detail) => Err(ClusterError::NodeCopy { detail }),
            Ok(_) if readable => Ok(path.to_path_buf()),
            Ok(_) if shared.is_empty() => Err(ClusterError::NodeCopy {
                detail: "the rank receiving it for this node could not store it".into(),
            }),
            Ok(_) => Ok(PathBuf::from(String::from_utf8_lossy(&shared).into_owned())),
        }
    }

    /// Rank 0 sends `path` to the other ranks of `group`, which write it into `staging`; every
    /// piece is received even after a write failed, so that the broadcast completes.
    fn broadcast_file(
        &self,
        group: &impl Communicator,
        path: &Path,
        staging: Option<&Path>,
    ) -> Result<Option<PathBuf>, String> {
        let root = group.process_at_rank(ROOT as i32);
        let mut source = if self.is_root() {
            std::fs::File::open(path)
                .map(Some)
                .map_err(|e| e.to_string())?
        } else {
            None
        };
        let mut length = match &source {
            Some(file) => file.metadata().map_err(|e| e.to_string())?.len(),
            None => 0,
        };
        root.broadcast_into(&mut length);
        let name = path.file_name().unwrap_or("input".as_ref());
        let target = staging.map(|dir| dir.join(name)).unwrap_or_default();
        let mut sink = match (&source, staging) {
            (Some(_), _) => Ok(None),
            (None, None) => Err("no temporary directory to receive it in".to_string()),
            (None, Some(_)) => std::fs::File::create(&target)
                .map(Some)
                .map_err(|e| format!("cannot write {}: {e}", target.display())),
        };
        let mut piece = vec![0u8; PIECE];
        let mut left = length;
        while left > 0 {
            let size = PIECE.min(left as usize);
            if let Some(file) = &mut source {
                file.read_exact(&mut piece[..size])
                    .map_err(|e| e.to_string())?;
            }
            root.broadcast_into(&mut piece[..size]);
            let counter = if self.is_root() {
                &BYTES_SENT
            } else {
                &BYTES_RECEIVED
            };
            counter.fetch_add(size as u64, Ordering::Relaxed);
            if let Ok(Some(file)) = &mut sink {
                if let Err(e) = file.write_all(&piece[..size]) {
                    sink = Err(format!("cannot write {}: {e}", target.display()));
                }
            }
            left -= size as u64;
        }
        source.take();
        match sink {
            Ok(Some(file)) => file
                .sync_all()
                .map(|()| Some(target.clone()))
                .map_err(|e| format!("cannot write {}: {e}", target.display())),
            other => other.map(|_| None),
        }
    }
}
