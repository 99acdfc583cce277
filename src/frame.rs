//! The 8-bit RGB frame that flows between media, engines and ranks.

use serde::{Deserialize, Serialize};

/// Width and height of a frame in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameSize {
    pub width: usize,
    pub height: usize,
}

impl FrameSize {
    /// Bytes of one interleaved RGB8 frame of this size.
    pub fn rgb_bytes(&self) -> usize {
        self.width * self.height * 3
    }
}

impl std::fmt::Display for FrameSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// An interleaved RGB8 image, rows top to bottom.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub size: FrameSize,
    pub data: Vec<u8>,
}

impl Frame {
    pub fn new(size: FrameSize, data: Vec<u8>) -> Self {
        debug_assert_eq!(data.len(), size.rgb_bytes());
        Frame { size, data }
    }
}
