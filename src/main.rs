//! The `stylemill` command line: parse, run, report errors once, map them to exit codes.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use stylemill::cluster::ClusterError;
use stylemill::cluster::{Cluster, Watchdog};
use stylemill::engine::{Device, Precision};
use stylemill::job::plan::Schedule;
use stylemill::job::{self, JobError, RunOptions, WatchOptions};
use stylemill::media::picture::DeinterlaceChoice;
use stylemill::model::styles::SHIPPED;
use stylemill::storage::{Location, StorageError, TransferSettings};
use stylemill::temporal::{TemporalSettings, DEFAULT_STRENGTH};

#[derive(Parser)]
#[command(
    name = "stylemill",
    version,
    about = "Neural style transfer for every frame of a video, across MPI ranks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Stylize every frame of a video (under mpirun: across all ranks).
    Run(RunArgs),
    /// Stylize one PNG or JPEG image.
    Image(ImageArgs),
    /// List the shipped styles.
    Styles,
    /// Watch a blob container and stylize every new video once (under mpirun: on all ranks).
    Watch(WatchArgs),
    /// Compile the CUDA kernels into the on-disk cache (for this node's GPUs, or --arch).
    Kernels(KernelArgs),
    /// Measure how much a stylized video flickers: its temporal warping error against the
    /// input (Lai et al. 2018), over the whole video and per frame.
    Flicker(FlickerArgs),
    /// Say what this machine offers a run (ffmpeg, MPI, CUDA, GPUs, CPU); fails when something
    /// a run needs is missing.
    Doctor,
}

#[derive(Args)]
struct FlickerArgs {
    /// The input video the stylized one was made from.
    input: PathBuf,
    /// The stylized video.
    styled: PathBuf,
    /// Also write the figures as JSON (the mean, the per-frame values, the flow used).
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Args)]
struct TemporalArgs {
    /// Blend each frame with the previous output carried along the input's optical flow where
    /// the flow is reliable: removes the shimmer of per-frame stylization.
    #[arg(long)]
    temporal: bool,
    /// How much of the previous output --temporal carries into each reliable pixel, from 0
    /// (none) to below 1.
    #[arg(long, default_value_t = DEFAULT_STRENGTH, value_parser = parse_strength, requires = "temporal")]
    temporal_strength: f32,
}

impl TemporalArgs {
    fn settings(&self) -> Option<TemporalSettings> {
        self.temporal.then_some(TemporalSettings {
            strength: self.temporal_strength,
        })
    }
}

fn parse_strength(text: &str) -> Result<f32, String> {
    let strength = text
        .parse::<f32>()
        .map_err(|_| format!("{text} is not a number; use for example 0.5"))?;
    TemporalSettings::new(strength)
        .map(|settings| settings.strength)
        .map_err(|error| error.to_string())
}

#[derive(Args)]
struct KernelArgs {
    /// Architectures such as sm_80,sm_90 (default: those of this node's GPUs).
    #[arg(long, value_delimiter = ',')]
    arch: Vec<String>,
}

#[derive(Args)]
struct StyleArgs {
    /// A shipped style (see `stylemill styles`) or the path of a .safetensors or .pth weights file.
    #[arg(long, short)]
    style: String,
    /// Shrink frames by this factor before stylizing (as pytorch/examples' --content-scale).
    #[arg(long)]
    scale: Option<f64>,
    /// CPU threads per rank (default: the cores this process may use).
    #[arg(long)]
    threads: Option<usize>,
    /// auto (a GPU when a CUDA driver and GPU are present, else the CPU), cpu, cuda, or cuda:N.
    #[arg(long, default_value = "auto")]
    device: Device,
    /// fp32 (matches PyTorch) or fast (BF16 tensor cores, GPU only).
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    precision: Precision,
}

#[derive(Args)]
struct RunArgs {
    /// Input video (MP4, MOV, MKV, WebM, AVI, ...): a path or a blob URL.
    input: String,
    /// Output video (.mp4, .mov, .mkv) or PNG frame pattern such as frames/%06d.png: a path or
    /// a blob URL.
    #[arg(long, short)]
    output: String,
    #[command(flatten)]
    style: StyleArgs,
    #[command(flatten)]
    encode: EncodeArgs,
    #[command(flatten)]
    temporal: TemporalArgs,
    #[command(flatten)]
    storage: StorageArgs,
    /// Stylize only the first N frames.
    #[arg(long)]
    limit: Option<usize>,
    /// Keep finished chunks here, so that rerunning the same command after a failure computes
    /// only what is missing.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Discard a --work-dir checkpoint of a different job instead of refusing it.
    #[arg(long)]
    restart: bool,
    /// Write a JSON report: per rank and per frame timings, totals, load imbalance.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Stream JSON-lines events while running (for `tail -f`).
    #[arg(long)]
    events: Option<PathBuf>,
}

#[derive(Args)]
struct EncodeArgs {
    /// H.264 quality: 0 lossless, 18 visually lossless, 51 worst.
    #[arg(long, default_value_t = 18)]
    crf: u8,
    /// Output pixel format (default yuv420p, or yuv444p for odd frame sizes).
    #[arg(long)]
    pix_fmt: Option<String>,
    /// Frames per encoded chunk (each chunk starts with a keyframe).
    #[arg(long, default_value_t = 32)]
    chunk_frames: usize,
    /// How chunks go to ranks: static (an even split, decided up front) or dynamic (handed out
    /// as ranks finish; for mixed GPUs and stragglers). Both give the same bytes.
    #[arg(long, value_enum, default_value_t = Schedule::Static)]
    schedule: Schedule,
    /// Frames a GPU stylizes at once.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Deinterlace before stylizing: auto (the frames flagged interlaced, when the stream's
    /// field order says interlaced), on (every frame), off.
    #[arg(long, value_enum, default_value_t = DeinterlaceChoice::Auto)]
    deinterlace: DeinterlaceChoice,
    /// Seconds a rank may make no progress before the job is stopped.
    #[arg(long, default_value_t = 300)]
    rank_timeout: u64,
}

#[derive(Args)]
struct StorageArgs {
    /// Blob service URL to use instead of the one in blob URLs (Azurite:
    /// http://127.0.0.1:10000/devstoreaccount1; sovereign clouds, private endpoints).
    #[arg(long)]
    blob_endpoint: Option<String>,
    /// Size of the blocks of a blob upload, such as 8M or 512K.
    #[arg(long, default_value = "8M", value_parser = parse_byte_size)]
    block_size: usize,
    /// Replace an output blob that already exists (local outputs are always replaced).
    #[arg(long)]
    overwrite: bool,
    /// Also write the run's log and report to this directory or blob container URL.
    #[arg(long)]
    log_to: Option<String>,
}

#[derive(Args)]
struct WatchArgs {
    /// The container to watch, as a URL (…/CONTAINER, or …/CONTAINER/PREFIX/ for a folder).
    container: String,
    /// Where outputs and markers go: a container name in the same account, or a container
    /// URL (default: the watched container).
    #[arg(long)]
    output_container: Option<String>,
    /// Seconds between two looks at the container.
    #[arg(long, default_value_t = 30.0)]
    interval: f64,
    /// Process the videos waiting now, then exit (for cron jobs and scheduled pipelines).
    #[arg(long)]
    once: bool,
    #[command(flatten)]
    style: StyleArgs,
    #[command(flatten)]
    encode: EncodeArgs,
    #[command(flatten)]
    temporal: TemporalArgs,
    #[command(flatten)]
    storage: StorageArgs,
}

/// `8M`, `512K`, `1G` or plain bytes.
fn parse_byte_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, ""),
    };
    let factor = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return Err(format!("{text} is not a size; use for example 8M or 512K")),
    };
    let size = digits
        .parse::<usize>()
        .map_err(|_| format!("{text} is not a size; use for example 8M or 512K"))?
        * factor;
    if !(1..=4000 << 20).contains(&size) {
        return Err(format!(
            "{text} is not a block size between 1 byte and 4000M"
        ));
    }
    Ok(size)
}

#[derive(Args)]
struct ImageArgs {
    /// Input PNG or JPEG.
    input: PathBuf,
    /// Output PNG or JPEG.
    output: PathBuf,
    #[command(flatten)]
    style: StyleArgs,
}

fn main() -> ExitCode {
    stylemill::logging::init();
    stylemill::shutdown::install();
    match Cli::parse().command {
        Command::Styles => {
            for style in &SHIPPED {
                println!("{:<14} {}", style.name, style.description);
            }
            ExitCode::SUCCESS
        }
        Command::Image(args) => {
            let result = job::stylize_image(
                &args.input,
                &args.output,
                &args.style.style,
                args.style.scale,
                args.style.threads,
                args.style.device,
                args.style.precision,
            );
            match result {
                Ok(size) => {
                    println!("wrote {} ({size})", args.output.display());
                    ExitCode::SUCCESS
                }
                Err(error) => fail(&error),
            }
        }
        Command::Run(args) => run(args),
        Command::Doctor => doctor(),
        Command::Flicker(args) => flicker(args),
        Command::Watch(args) => watch(args),
        Command::Kernels(args) => match stylemill::engine::cuda::kernels::warm_cache(&args.arch) {
            Ok(entries) => {
                for (file, arch, path) in entries {
                    println!("{file} for {arch}: {}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error),
        },
    }
}

fn parse_location(text: &str, storage: &StorageArgs) -> Result<Location, StorageError> {
    Location::parse(text, storage.blob_endpoint.as_deref())
}

impl StorageArgs {
    /// Where `--log-to` sends the log and report, if anywhere.
    fn log_destination(&self) -> Result<Option<Location>, StorageError> {
        self.log_to
            .as_deref()
            .map(|text| parse_location(text, self))
            .transpose()
    }
}

/// The options every job shares, for `run` and for each video of `watch`.
fn job_options(
    style: StyleArgs,
    encode: EncodeArgs,
    temporal: &TemporalArgs,
    storage: &StorageArgs,
    input: Location,
    output: Location,
) -> RunOptions {
    RunOptions {
        input,
        output,
        transfer: TransferSettings {
            block_size: storage.block_size,
            overwrite: storage.overwrite,
        },
        style: style.style,
        scale: style.scale,
        limit: None,
        crf: encode.crf,
        pix_fmt: encode.pix_fmt,
        chunk_frames: encode.chunk_frames,
        schedule: encode.schedule,
        deinterlace: encode.deinterlace,
        threads: style.threads,
        device: style.device,
        precision: style.precision,
        batch: encode.batch.max(1),
        temporal: temporal.settings(),
        work_dir: None,
        restart: false,
        rank_timeout: Duration::from_secs(encode.rank_timeout.max(1)),
        report: None,
        events: None,
    }
}

/// Starts MPI when launched by mpirun (the start-up watchdog armed first).
fn start_cluster(rank_timeout: u64) -> Result<(Cluster, Option<Watchdog>), ClusterError> {
    let rank_timeout = Duration::from_secs(rank_timeout.max(1));
    let watchdog = stylemill::cluster::launched_by_mpi().then(|| Watchdog::start(rank_timeout));
    Ok((Cluster::init()?, watchdog))
}

fn run(args: RunArgs) -> ExitCode {
    let (cluster, watchdog) = match start_cluster(args.encode.rank_timeout) {
        Ok(started) => started,
        Err(error) => return fail(&error),
    };
    let locations = (|| {
        let input = parse_location(&args.input, &args.storage)?;
        let output = parse_location(&args.output, &args.storage)?;
        let log_to = args.storage.log_destination()?;
        Ok::<_, StorageError>((input, output, log_to))
    })();
    let (input, output, log_to) = match locations {
        Ok(locations) => locations,
        Err(error) => return fail(&error),
    };
    let log_to = log_to.filter(|_| cluster.is_root());
    if log_to.is_some() {
        stylemill::logging::start_capture();
    }
    let options = RunOptions {
        limit: args.limit,
        work_dir: args.work_dir,
        restart: args.restart,
        report: args.report,
        events: args.events,
        ..job_options(
            args.style,
            args.encode,
            &args.temporal,
            &args.storage,
            input,
            output,
        )
    };
    let result = job::run(&options, &cluster, watchdog);
    let code = match &result {
        Ok(Some(summary)) => {
            let report = &summary.report;
            println!(
                "wrote {}: {} frames, {} computed in {:.1} s ({:.2} frames/s on {} rank(s)), {} from checkpoints",
                summary.output,
                report.frames,
                report.computed,
                report.totals.wall_s,
                report.frames_per_second,
                summary.ranks,
                report.reused,
            );
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(JobError::ReportedByRoot) => ExitCode::FAILURE,
        Err(error) => fail(error),
    };
    if let Some(destination) = &log_to {
        let report = result
            .as_ref()
            .ok()
            .and_then(|s| s.as_ref())
            .map(|s| &s.report);
        if let Err(error) = job::publish_log(destination, &job::stem_of(&options.input), report) {
            eprintln!("error: {}", stylemill::redact::redact(&error.to_string()));
        }
    }
    if matches!(result, Err(JobError::DuringRun(_))) && cluster.size() > 1 {
        // Other ranks may be blocked sending or receiving frames: end them all.
        cluster.abort(1);
    }
    code
}

fn flicker(args: FlickerArgs) -> ExitCode {
    let measured =
        stylemill::temporal::flicker::measure(&args.input, &args.styled).and_then(|report| {
            if let Some(path) = &args.report {
                report.write(path)?;
            }
            Ok(report)
        });
    match measured.map(|report| print_flicker(&report)) {
        // A reader that stops early (`| head`) has what it wanted.
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Ok(Err(error)) => fail(&error),
        Err(error) => fail(&error),
    }
}

/// The mean, then one line per frame.
fn print_flicker(report: &stylemill::temporal::flicker::FlickerReport) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "warping error {:.6} over {} frames at {} ({})",
        report.warping_error, report.frames, report.size, report.flow
    )?;
    for (frame, error) in (1..).zip(&report.per_frame) {
        match error {
            Some(error) => writeln!(out, "frame {frame}: {error:.6}")?,
            None => writeln!(out, "frame {frame}: no pixel visible in both frames")?,
        }
    }
    out.flush()
}

fn doctor() -> ExitCode {
    let findings = stylemill::doctor::examine();
    for f in &findings {
        let mark = match (f.ok, f.needed) {
            (true, _) => "ok",
            (false, true) => "MISSING",
            (false, false) => "--",
        };
        println!("{:<13} {:<8} {}", f.topic, mark, f.what);
    }
    let missing: Vec<&str> = findings
        .iter()
        .filter(|f| f.needed && !f.ok)
        .map(|f| f.topic.as_str())
        .collect();
    if missing.is_empty() {
        println!("everything a run needs is here");
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "error: this machine lacks what a run needs ({}); install it and run stylemill doctor again",
            missing.join(", ")
        );
        ExitCode::FAILURE
    }
}

fn watch(args: WatchArgs) -> ExitCode {
    let (cluster, watchdog) = match start_cluster(args.encode.rank_timeout) {
        Ok(started) => started,
        Err(error) => return fail(&error),
    };
    // Between jobs a watcher may be idle for hours: the start-up deadline ends here.
    drop(watchdog);
    let parsed = (|| {
        let source = match parse_location(&args.container, &args.storage)? {
            Location::Blob(address) => address,
            Location::Local(path) => {
                return Err(StorageError::WatchNeedsContainer {
                    given: path.display().to_string(),
                })
            }
        };
        let log_to = args.storage.log_destination()?;
        Ok((source, log_to))
    })();
    let (source, log_to) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return fail(&error),
    };
    if !(args.interval.is_finite() && args.interval >= 0.0) {
        eprintln!(
            "error: --interval {} is not a number of seconds; use for example --interval 30",
            args.interval
        );
        return ExitCode::FAILURE;
    }
    let suffix = style_label(&args.style.style);
    let placeholder = Location::Blob(source.clone());
    let options = WatchOptions {
        output_container: args.output_container.clone(),
        blob_endpoint: args.storage.blob_endpoint.clone(),
        interval: Duration::from_secs_f64(args.interval),
        once: args.once,
        suffix,
        log_to,
        run: job_options(
            args.style,
            args.encode,
            &args.temporal,
            &args.storage,
            placeholder.clone(),
            placeholder,
        ),
        source,
    };
    match job::watch(&options, &cluster) {
        Ok(summary) => {
            if cluster.is_root() {
                println!(
                    "watched {}: {} video(s) stylized, {} refused with an error marker",
                    options.source, summary.processed, summary.failed
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            let code = fail(&error);
            if matches!(error, JobError::DuringRun(_)) && cluster.size() > 1 {
                cluster.abort(1);
            }
            code
        }
    }
}

/// The name of a style as used in output names: a shipped name, or a weights file's stem.
fn style_label(style: &str) -> String {
    let stem = std::path::Path::new(style)
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or(style);
    stem.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn fail(error: &dyn std::error::Error) -> ExitCode {
    stylemill::shutdown::halt_if_stopping();
    let line = format!("error: {}", stylemill::redact::redact(&error.to_string()));
    eprintln!("{line}");
    stylemill::logging::note(&line);
    ExitCode::FAILURE
}
