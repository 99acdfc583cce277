//! `stylemill doctor`: what this machine offers a run, and what each thing enables. It looks at
//! ffmpeg and ffprobe (versions, the encoders and filters stylemill uses), the MPI library and
//! launchers, the CUDA driver, NVRTC and each GPU, the CPU's vector features and the CPU
//! engine's kernel, and the kernel cache. A finding that a run needs and is missing makes the
//! command fail, so that an image build or a job's first step stops before any work.

use crate::engine::cpu::conv::Isa;
use crate::media::tools;

/// One line of the report.
pub struct Finding {
    pub topic: String,
    pub what: String,
    /// Present and usable.
    pub ok: bool,
    /// A run cannot go without it.
    pub needed: bool,
}

fn finding(topic: &str, what: String, ok: bool, needed: bool) -> Finding {
    Finding {
        topic: topic.to_string(),
        what,
        ok,
        needed,
    }
}

/// Everything the doctor looks at, in the order it is printed.
pub fn examine() -> Vec<Finding> {
    let mut findings = ffmpeg_findings();
    findings.push(mpi_finding());
    findings.push(launcher_finding());
    findings.extend(cuda_findings());
    let isa = Isa::detect();
    let features: Vec<&str> = ["avx512f", "avx2", "fma"]
        .into_iter()
        .filter(|f| cpu_has(f))
        .collect();
    findings.push(finding(
        "CPU",
        format!(
            "{} cores, vector features {}; CPU engine kernel: {}",
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            if features.is_empty() {
                "none of avx512f, avx2, fma".to_string()
            } else {
                features.join(", ")
            },
            isa.name()
        ),
        true,
        true,
    ));
    findings.push(kernel_cache_finding());
    findings.push(flow_finding());
    findings
}

/// Optical flow, for `--temporal` and `stylemill flicker` only.
fn flow_finding() -> Finding {
    match crate::temporal::flow::FlowEstimator::new() {
        Ok(_) => finding(
            "optical flow",
            format!(
                "{} (for --temporal and flicker)",
                crate::temporal::flow::method()
            ),
            true,
            false,
        ),
        Err(error) => finding("optical flow", error.to_string(), false, false),
    }
}

fn cpu_has(feature: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match feature {
            "avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
            "avx2" => std::arch::is_x86_feature_detected!("avx2"),
            "fma" => std::arch::is_x86_feature_detected!("fma"),
            _ => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = feature;
        false
    }
}

/// What `ffmpeg -hide_banner -<list>` lists.
fn ffmpeg_list(tools: &tools::Tools, list: &str) -> String {
    std::process::Command::new(&tools.ffmpeg.path)
        .args(["-hide_banner", list])
        .stdin(std::process::Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn ffmpeg_findings() -> Vec<Finding> {
    let tools = match tools::tools() {
        Ok(tools) => tools,
        Err(error) => return vec![finding("ffmpeg", error.to_string(), false, true)],
    };
    let mut findings = vec![
        finding(
            "ffmpeg",
            format!(
                "{} at {} (4.4 or later is needed)",
                tools.ffmpeg.stated,
                tools.ffmpeg.path.display()
            ),
            true,
            true,
        ),
        finding(
            "ffprobe",
            format!(
                "{} at {}",
                tools.ffprobe.stated,
                tools.ffprobe.path.display()
            ),
            true,
            true,
        ),
    ];
    let listed = |list: &str, name: &str| {
        ffmpeg_list(tools, list)
            .lines()
            .any(|line| line.split_whitespace().nth(1) == Some(name))
    };
    for (name, enables, needed) in [
        ("libx264", "H.264 video outputs", true),
        ("png", "PNG frame sequences", false),
        ("aac", "audio that MP4 cannot hold as it is", false),
    ] {
        let ok = listed("-encoders", name);
        findings.push(finding(
            "encoder",
            format!("{name}: {} ({enables})", if ok { "yes" } else { "MISSING" }),
            ok,
            needed,
        ));
    }
    for (name, enables) in [
        ("showinfo", "identifying the frames a rank decodes"),
        ("scale", "--scale and RGB conversion"),
    ] {
        let ok = listed("-filters", name);
        findings.push(finding(
            "filter",
            format!("{name}: {} ({enables})", if ok { "yes" } else { "MISSING" }),
            ok,
            true,
        ));
    }
    findings
}

fn mpi_finding() -> Finding {
    match crate::cluster::library_version() {
        Some(version) => finding(
            "MPI",
            format!(
                "{} (runs under mpirun, srun and Azure ML)",
                version.lines().next().unwrap_or("").trim()
            ),
            true,
            false,
        ),
        None => finding(
            "MPI",
            "built without MPI: jobs run as one rank".into(),
            false,
            false,
        ),
    }
}

fn launcher_finding() -> Finding {
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    };
    let found: Vec<String> = ["mpirun", "mpiexec", "srun"]
        .into_iter()
        .filter_map(|name| on_path(name).map(|p| format!("{name} ({})", p.display())))
        .collect();
    let ok = !found.is_empty();
    finding(
        "launcher",
        if ok {
            found.join(", ")
        } else {
            "none on PATH: jobs run as one rank".into()
        },
        ok,
        false,
    )
}

fn cuda_findings() -> Vec<Finding> {
    let mut findings = Vec::new();
    // SAFETY: probing for libcuda only runs its initialisers (cudarc panics without it).
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        findings.push(finding(
            "CUDA driver",
            "not found (libcuda.so.1): the CPU engine is used".into(),
            false,
            false,
        ));
    } else {
        let mut version = 0;
        // SAFETY: the driver library is present; the call writes one int.
        unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut version) };
        findings.push(finding(
            "CUDA driver",
            format!("CUDA {}.{}", version / 1000, version % 1000 / 10),
            true,
            false,
        ));
        match crate::engine::select::gpu_count() {
            Ok(count) => findings.extend((0..count).map(gpu_finding)),
            Err(reason) => findings.push(finding("GPU", reason, false, false)),
        }
    }
    findings.push(match crate::engine::cuda::nvrtc::nvrtc() {
        Ok(nvrtc) => finding(
            "NVRTC",
            format!(
                "{}.{} from {} (compiles the CUDA kernels)",
                nvrtc.version.0, nvrtc.version.1, nvrtc.location
            ),
            true,
            false,
        ),
        Err(error) => finding("NVRTC", error.to_string(), false, false),
    });
    findings
}

fn gpu_finding(ordinal: usize) -> Finding {
    let described = cudarc::driver::CudaContext::new(ordinal).and_then(|ctx| {
        let (major, minor) = ctx.compute_capability()?;
        let (_, total) = ctx.mem_get_info()?;
        Ok(format!(
            "{}: {}, sm_{major}{minor}, {:.1} GiB",
            ordinal,
            ctx.name()?,
            total as f64 / (1u64 << 30) as f64
        ))
    });
    match described {
        Ok(what) => finding("GPU", what, true, false),
        Err(error) => finding("GPU", format!("{ordinal}: {error}"), false, false),
    }
}

fn kernel_cache_finding() -> Finding {
    match crate::engine::cuda::kernels::cache_dir() {
        Some(dir) => {
            let entries = std::fs::read_dir(&dir).map_or(0, |d| d.count());
            finding(
                "kernel cache",
                format!(
                    "{} ({entries} compiled kernel files; `stylemill kernels` fills it)",
                    dir.display()
                ),
                true,
                false,
            )
        }
        None => finding(
            "kernel cache",
            "no HOME or STYLEMILL_KERNEL_CACHE: kernels are compiled at every start".into(),
            false,
            false,
        ),
    }
}
