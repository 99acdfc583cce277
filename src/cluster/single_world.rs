//! The cluster of a build without MPI (`--no-default-features`): a world of one rank, for
//! laptops and desktops with no MPI library installed. Started by an MPI launcher, it says it
//! cannot take part instead of running as many unrelated single-rank jobs.

use super::{Cluster, ClusterError};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// No MPI world can exist in this build: the type has no values, so the cluster's world is
/// always `None` and these methods are never called.
pub enum World {}

/// There is no MPI library to describe.
pub fn library_version() -> Option<String> {
    None
}

pub(super) fn abort_if_started(_code: i32) {}

impl World {
    pub(super) fn start() -> Result<(World, usize, usize, usize), ClusterError> {
        Err(ClusterError::BuiltWithoutMpi)
    }

    pub(super) fn broadcast(&self, _is_root: bool, _payload: Option<Vec<u8>>) -> Vec<u8> {
        match *self {}
    }

    pub(super) fn barrier(&self) {
        match *self {}
    }

    pub(super) fn abort(&self, _code: i32) -> ! {
        match *self {}
    }
}

pub(super) fn send(
    _rank: usize,
    _bytes: Vec<u8>,
    _tag: i32,
    _timeout: Duration,
) -> Result<(), ClusterError> {
    Err(ClusterError::BuiltWithoutMpi)
}

pub(super) fn receive(_rank: usize, _timeout: Duration) -> Result<(i32, Vec<u8>), ClusterError> {
    Err(ClusterError::BuiltWithoutMpi)
}

impl Cluster {
    /// The only rank reads the input where it is.
    pub fn share_file(
        &self,
        path: &Path,
        _readable: bool,
        _staging: Option<&Path>,
    ) -> Result<PathBuf, ClusterError> {
        Ok(path.to_path_buf())
    }
}
