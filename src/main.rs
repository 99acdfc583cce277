//! The `stylemill` command line: parse, run, report errors once, map them to exit codes.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use stylemill::cluster::{Cluster, Watchdog};
use stylemill::engine::{Device, Precision};
use stylemill::job::{self, JobError, RunOptions};
use stylemill::model::styles::SHIPPED;

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
    /// Compile the CUDA kernels into the on-disk cache (for this node's GPUs, or --arch).
    Kernels(KernelArgs),
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
    /// Input video (MP4, MOV, MKV, WebM, AVI, ...).
    input: PathBuf,
    /// Output video (.mp4, .mov, .mkv) or PNG frame pattern such as frames/%06d.png.
    #[arg(long, short)]
    output: PathBuf,
    #[command(flatten)]
    style: StyleArgs,
    /// Stylize only the first N frames.
    #[arg(long)]
    limit: Option<usize>,
    /// H.264 quality: 0 lossless, 18 visually lossless, 51 worst.
    #[arg(long, default_value_t = 18)]
    crf: u8,
    /// Output pixel format (default yuv420p, or yuv444p for odd frame sizes).
    #[arg(long)]
    pix_fmt: Option<String>,
    /// Frames per encoded chunk (each chunk starts with a keyframe).
    #[arg(long, default_value_t = 32)]
    chunk_frames: usize,
    /// Frames a GPU stylizes at once.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Keep finished chunks here, so that rerunning the same command after a failure computes
    /// only what is missing.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Discard a --work-dir checkpoint of a different job instead of refusing it.
    #[arg(long)]
    restart: bool,
    /// Seconds a rank may make no progress before the job is stopped.
    #[arg(long, default_value_t = 300)]
    rank_timeout: u64,
    /// Write a JSON report: per rank and per frame timings, totals, load imbalance.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Stream JSON-lines events while running (for `tail -f`).
    #[arg(long)]
    events: Option<PathBuf>,
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
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    stylemill::storage::clean_up_on_termination();
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

fn run(args: RunArgs) -> ExitCode {
    let rank_timeout = std::time::Duration::from_secs(args.rank_timeout.max(1));
    let watchdog = stylemill::cluster::launched_by_mpi().then(|| Watchdog::start(rank_timeout));
    let cluster = match Cluster::init() {
        Ok(cluster) => cluster,
        Err(error) => return fail(&error),
    };
    let options = RunOptions {
        input: args.input,
        output: args.output,
        style: args.style.style,
        scale: args.style.scale,
        limit: args.limit,
        crf: args.crf,
        pix_fmt: args.pix_fmt,
        chunk_frames: args.chunk_frames,
        threads: args.style.threads,
        device: args.style.device,
        precision: args.style.precision,
        batch: args.batch.max(1),
        work_dir: args.work_dir,
        restart: args.restart,
        rank_timeout,
        report: args.report,
        events: args.events,
    };
    match job::run(&options, &cluster, watchdog) {
        Ok(Some(summary)) => {
            let report = &summary.report;
            println!(
                "wrote {}: {} frames, {} computed in {:.1} s ({:.2} frames/s on {} rank(s)), {} from checkpoints",
                summary.output.display(),
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
        Err(error) => {
            let code = fail(&error);
            if matches!(error, JobError::DuringRun(_)) && cluster.size() > 1 {
                // Other ranks may be blocked sending or receiving frames: end them all.
                cluster.abort(1);
            }
            code
        }
    }
}

fn fail(error: &dyn std::error::Error) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::FAILURE
}
