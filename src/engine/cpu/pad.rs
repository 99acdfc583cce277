//! Reflection padding (and the deconvolutions' nearest 2x upsampling) into a reused buffer.
//!
//! On the CPU a padded copy costs a few percent of a convolution and lets the convolution kernel
//! read every input row without bounds logic.

use super::activation::Activation;
use rayon::prelude::*;

/// Index into a reflected axis of length `len` (PyTorch's ReflectionPad2d, no edge repeat).
fn reflect(i: isize, len: usize) -> usize {
    let len = len as isize;
    let reflected = if i < 0 {
        -i
    } else if i >= len {
        2 * (len - 1) - i
    } else {
        i
    };
    reflected as usize
}

/// Geometry of a padded input: `rows` of `row_pixels` pixels; pixels past `width` are zero slack
/// that lets a kernel compute whole pixel blocks past the right edge.
#[derive(Debug, Clone, Copy)]
pub struct Padded {
    pub rows: usize,
    pub width: usize,
    pub row_pixels: usize,
}

/// Writes `src` (upsampled 2x if asked) reflection-padded by `pad` on every side into `dst`.
pub fn reflect_pad(
    src: &Activation,
    pad: usize,
    upsample: bool,
    row_pixels_at_least: usize,
    dst: &mut Vec<f32>,
) -> Padded {
    let factor = if upsample { 2 } else { 1 };
    let (height, width) = (src.height * factor, src.width * factor);
    let c = src.channels;
    let geometry = Padded {
        rows: height + 2 * pad,
        width: width + 2 * pad,
        row_pixels: row_pixels_at_least.max(width + 2 * pad),
    };
    dst.resize(geometry.rows * geometry.row_pixels * c, 0.0);
    dst.par_chunks_mut(geometry.row_pixels * c)
        .enumerate()
        .for_each(|(py, row)| {
            let sy = reflect(py as isize - pad as isize, height) / factor;
            let src_row = &src.data[sy * src.row_len()..][..src.row_len()];
            for px in 0..geometry.width {
                let sx = reflect(px as isize - pad as isize, width) / factor;
                row[px * c..][..c].copy_from_slice(&src_row[sx * c..][..c]);
            }
            row[geometry.width * c..].fill(0.0);
        });
    geometry
}
