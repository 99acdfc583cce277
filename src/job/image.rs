//! `stylemill image`: one PNG or JPEG in, one stylized image out, written atomically.

use super::plan::scaled_size;
use super::JobError;
use crate::engine::{check_frame_size, create_engine, Device, Precision};
use crate::frame::{Frame, FrameSize};
use crate::model::styles::load_style;
use crate::storage::{check_not_input, Staging};
use std::path::Path;

/// Stylizes the image at `input` into `output` (format from its extension).
pub fn stylize_image(
    input: &Path,
    output: &Path,
    style: &str,
    scale: Option<f64>,
    threads: Option<usize>,
    device: Device,
    precision: Precision,
) -> Result<FrameSize, JobError> {
    if let Some(factor) = scale.filter(|f| !(f.is_finite() && *f > 0.0)) {
        return Err(JobError::BadScale(factor));
    }
    let write_error = |detail: String| JobError::ImageWrite {
        path: output.display().to_string(),
        detail,
    };
    let format = image::ImageFormat::from_path(output)
        .ok()
        .filter(|f| matches!(f, image::ImageFormat::Png | image::ImageFormat::Jpeg))
        .ok_or_else(|| write_error("unsupported image type".into()))?;
    check_not_input(output, input)?;
    let staging = Staging::beside(output)?;
    let net = load_style(style)?;
    let decoded = image::open(input).map_err(|e| JobError::ImageRead {
        path: input.display().to_string(),
        detail: e.to_string(),
    })?;
    let size = scaled_size(
        FrameSize {
            width: decoded.width() as usize,
            height: decoded.height() as usize,
        },
        scale,
    );
    check_frame_size(size)?;
    let rgb = decoded
        .resize_exact(
            size.width as u32,
            size.height as u32,
            image::imageops::FilterType::Lanczos3,
        )
        .to_rgb8();
    let mut engine = create_engine(device, precision, 1, &net, threads, 0)?;
    log::info!("{}", engine.describe());
    let stylized = engine.stylize(&Frame::new(size, rgb.into_raw()))?;
    let name = "image";
    let staged = staging.path().join(name);
    image::save_buffer_with_format(
        &staged,
        &stylized.data,
        size.width as u32,
        size.height as u32,
        image::ExtendedColorType::Rgb8,
        format,
    )
    .map_err(|e| write_error(e.to_string()))?;
    staging.publish_file(name, output)?;
    Ok(size)
}
