//! stylemill: neural style transfer for every frame of a video, in parallel across MPI ranks.
//!
//! The binary (`src/main.rs`) only parses the command line; everything it does lives here so
//! that tests and benchmarks drive the same code.

pub mod cluster;
pub mod doctor;
pub mod engine;
pub mod frame;
pub mod hash;
pub mod job;
pub mod logging;
pub mod media;
pub mod model;
pub mod redact;
pub mod shutdown;
pub mod storage;
pub mod temporal;
