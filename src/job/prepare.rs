//! Rank 0's preparation of a run: every option and the input are checked here, before any rank
//! works (so that a refusal costs nothing and leaves nothing), the input is probed, the work
//! directory is readied for resuming, and the plan is made.

use super::plan::{scaled_size, Plan};
use super::resume::{prepare_work_dir, Manifest};
use super::run::RunOptions;
use super::JobError;
use crate::engine::check_frame_size;
use crate::media::output::{OutputKind, OutputSpec};
use crate::media::probe::VideoInfo;
use crate::media::{probe, tools, MediaError};
use crate::model::styles::style_bytes;
use crate::model::TransformerNet;
use crate::storage::{fetch, output_directory, FileIdentity, LocalInput, Location, OutputTarget};
use crate::temporal::flow::FlowEstimator;
use std::path::PathBuf;

/// Where chunks are kept: the user's work directory, or a temporary one inside the staging
/// directory.
pub enum WorkArea {
    Kept(PathBuf),
    Temporary,
}

/// Rank 0's preparation: everything that can be refused is checked here, before any rank works.
pub struct Prepared {
    pub net: TransformerNet,
    pub plan: Plan,
    pub weights: Vec<u8>,
    pub target: OutputTarget,
    /// Kept until the run ends: a downloaded input is deleted when dropped.
    pub input: LocalInput,
    pub work: WorkArea,
}

impl Prepared {
    pub fn work_dir(&self) -> PathBuf {
        match &self.work {
            WorkArea::Kept(dir) => dir.clone(),
            WorkArea::Temporary => self.target.staging_path().to_path_buf(),
        }
    }
}

pub fn prepare(options: &RunOptions, ranks: usize) -> Result<Prepared, JobError> {
    tools::tools()?;
    if let Some(scale) = options.scale {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(JobError::BadScale(scale));
        }
    }
    if options.limit == Some(0) {
        return Err(JobError::ZeroLimit);
    }
    if options.chunk_frames == 0 {
        return Err(JobError::ZeroChunk);
    }
    if let Location::Local(path) = &options.input {
        if !path.exists() {
            return Err(MediaError::InputMissing {
                path: path.display().to_string(),
            }
            .into());
        }
    }
    crate::engine::select::check_device(options.device)?;
    if options.temporal.is_some() {
        FlowEstimator::new()?;
    }
    let mut output = OutputSpec::parse(
        &options.output.as_path(),
        options.crf,
        options.pix_fmt.as_deref(),
    )?;
    let frame_sequence = matches!(output.kind, OutputKind::Images { .. });
    let target = OutputTarget::prepare(
        &options.output,
        &options.input,
        &options.transfer,
        frame_sequence,
    )?;
    for path in [&options.report, &options.events].into_iter().flatten() {
        if !output_directory(path).is_dir() {
            return Err(JobError::ReportWrite {
                path: path.display().to_string(),
                detail: "its directory does not exist".into(),
            });
        }
    }
    let weights = style_bytes(&options.style)?;
    let net = TransformerNet::from_bytes(&weights, &options.style)?;
    let input = fetch(&options.input)?;
    let mut info = probe::probe(input.path(), &options.input.shown())?;
    info.picture.deinterlace(options.deinterlace);
    match (info.picture.interlaced, info.picture.deinterlacing.filter()) {
        (true, Some(_)) => log::info!(
            "{}: the video is interlaced; its frames are deinterlaced (bwdif, one frame per frame) before stylizing, and the output is progressive",
            options.input.shown()
        ),
        (true, None) => log::info!(
            "{}: the video is flagged interlaced but --deinterlace off keeps its frames as they are",
            options.input.shown()
        ),
        (false, Some(_)) => log::info!(
            "{}: every frame is deinterlaced (--deinterlace on)",
            options.input.shown()
        ),
        (false, None) => {}
    }
    let input_identity = FileIdentity::of(input.path()).map_err(|e| MediaError::NotAVideo {
        path: options.input.shown(),
        detail: e.to_string(),
    })?;
    let size = scaled_size(info.size, options.scale);
    check_frame_size(size)?;
    output.fit_to_size(size.width, size.height)?;
    log_colour(&options.input.shown(), &info, &output);
    let frames = options
        .limit
        .map_or(info.frames, |limit| limit.min(info.frames));
    let chunks = frames.div_ceil(options.chunk_frames);
    let mut plan = Plan {
        input: info,
        input_identity,
        frames,
        size,
        output,
        chunk_frames: options.chunk_frames,
        todo_chunks: (0..chunks).collect(),
        schedule: options.schedule,
        ranks,
        temporal: options.temporal,
    };
    let (work, done) = match &options.work_dir {
        Some(dir) => {
            let manifest = Manifest::new(&plan, &weights);
            let (dir, done) = prepare_work_dir(dir, &manifest, chunks, options.restart)?;
            (WorkArea::Kept(dir), done)
        }
        None => (WorkArea::Temporary, Vec::new()),
    };
    plan.todo_chunks.retain(|c| !done.contains(c));
    log::info!(
        "{}: {} frames at {} fps, {}{}; stylizing {} of {} frames at {} on {} rank(s), {:?} schedule{}",
        options.input.shown(),
        plan.input.frames,
        plan.input.frame_rate,
        plan.input.size,
        if plan.input.audio.is_empty() {
            ", no audio"
        } else {
            ", with audio"
        },
        plan.frames_to_compute(),
        frames,
        size,
        ranks,
        options.schedule,
        if done.is_empty() {
            String::new()
        } else {
            format!(" ({} chunks already done)", done.len())
        },
    );
    Ok(Prepared {
        net,
        plan,
        weights,
        target,
        input,
        work,
    })
}

/// Says how the input's colour is read and what the output keeps of it.
fn log_colour(shown: &str, info: &VideoInfo, output: &OutputSpec) {
    let colour = &info.colour;
    if colour.assumed.is_empty() {
        log::info!(
            "{shown}: colour {colour}, used to convert to RGB and back and kept for the output"
        );
    } else {
        log::info!(
            "{shown}: colour {colour} ({} not tagged in the file, so assumed as players assume for its size), used to convert to RGB and back and tagged on the output",
            colour.assumed.join(", ")
        );
    }
    if info.bit_depth > 8 {
        let written = match &output.kind {
            OutputKind::Video { pix_fmt, .. } => pix_fmt.as_str(),
            OutputKind::Images { .. } => "rgb24 PNG",
        };
        log::info!(
            "{shown}: the video is {}-bit ({}); it is stylized as 8-bit RGB and written as {written}{}",
            info.bit_depth,
            info.pix_fmt,
            if written.contains("10") { "" } else { " (--pix-fmt yuv420p10le writes 10-bit)" }
        );
    }
}
