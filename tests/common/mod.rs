//! Helpers shared by the integration tests: where the shared fixtures are, and image loading.
#![allow(dead_code)]

use std::path::PathBuf;
use stylemill::frame::{Frame, FrameSize};

/// The `shared/` folder beside the checkout (`STYLEMILL_SHARED` overrides).
pub fn shared() -> PathBuf {
    std::env::var_os("STYLEMILL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

pub fn read_png(path: &std::path::Path) -> Frame {
    let image = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    let size = FrameSize {
        width: image.width() as usize,
        height: image.height() as usize,
    };
    Frame::new(size, image.into_raw())
}

pub fn read_f32(path: &std::path::Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}
