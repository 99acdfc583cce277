//! Feature maps between layers: HxWxC f32, channels innermost, so that a pixel's channels (and a
//! convolution's whole kernel row) are contiguous in memory.

/// A feature map whose buffer is reused from frame to frame.
#[derive(Debug, Default)]
pub struct Activation {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub data: Vec<f32>,
}

impl Activation {
    /// Reshapes without freeing: the buffer only grows, so steady-state frames allocate nothing.
    pub fn reshape(&mut self, height: usize, width: usize, channels: usize) {
        self.height = height;
        self.width = width;
        self.channels = channels;
        self.data.resize(height * width * channels, 0.0);
    }

    /// Floats in one row.
    pub fn row_len(&self) -> usize {
        self.width * self.channels
    }
}
