//! The CUDA kernels: sources embedded in the binary (kernels/*.cu), compiled with NVRTC at run
//! time to machine code (a cubin) for the GPU's own architecture, and cached on disk so that
//! ranks do not recompile at every start. A cubin loads on any driver that supports the GPU;
//! PTX from a newer NVRTC than the driver (NVRTC 12.9 writes PTX 8.8, which drivers before R575
//! refuse) would not, so PTX is only the fallback for a GPU newer than NVRTC knows, compiled
//! for the newest architecture it does know and left to the driver to translate. Also the offline check that every kernel compiles for given architectures, with
//! the registers and spills ptxas reports, which CI runs without a GPU.

use super::nvrtc::{nvrtc, Output};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Helpers every kernel source includes; NVRTC gets one self-contained source per family.
const COMMON: &str = include_str!("../../../kernels/common.cuh");

/// The kernel families: (file, source, kernel names).
pub const FAMILIES: [(&str, &str, &[&str]); 3] = [
    (
        "conv.cu",
        include_str!("../../../kernels/conv.cu"),
        &[
            "conv2d_f32",
            "conv2d_bf16_tc",
            "conv2d_f32_n32",
            "conv2d_bf16_tc_n32",
            "conv2d_direct_to32",
            "conv2d_direct_to3",
            "conv2d_direct_to3_tc",
            "conv2d_direct_to32_tc",
        ],
    ),
    (
        "norm.cu",
        include_str!("../../../kernels/norm.cu"),
        &["norm_partial_sums", "norm_finalize", "norm_apply"],
    ),
    (
        "frame.cu",
        include_str!("../../../kernels/frame.cu"),
        &["rgb8_to_f32", "f32_to_rgb8", "crop_f32"],
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("NVRTC (libnvrtc.so.13 or libnvrtc.so.12), which compiles stylemill's CUDA kernels, was not found; install the CUDA toolkit or `pip install nvidia-cuda-nvrtc-cu12`, then put its lib directory on LD_LIBRARY_PATH or in STYLEMILL_NVRTC_DIR")]
    NvrtcMissing,
    #[error("kernel source {file} does not compile for {arch}: {log}")]
    Compile {
        file: String,
        arch: String,
        log: String,
    },
    #[error("no GPU architecture to compile for: {0}; name one with --arch, such as --arch sm_90")]
    NoArchitecture(String),
    #[error("ptxas failed on {file} for {arch}: {detail}")]
    Ptxas {
        file: String,
        arch: String,
        detail: String,
    },
}

/// The source NVRTC compiles for a family: the shared helpers, then the family's kernels.
pub fn full_source(source: &str) -> String {
    format!("{COMMON}\n{source}")
}

/// Compiles one family with NVRTC for `arch` (`sm_90`, ...): PTX, or a cubin.
fn compile_with(
    file: &str,
    source: &str,
    arch: &str,
    output: Output,
) -> Result<Vec<u8>, KernelError> {
    let options = [
        format!("--gpu-architecture={arch}"),
        "--std=c++17".to_string(),
    ];
    nvrtc()?
        .compile(file, &full_source(source), &options, output)
        .map_err(|log| KernelError::Compile {
            file: file.to_string(),
            arch: arch.to_string(),
            log,
        })
}

/// Compiles one family to PTX for `arch` (`sm_90`, ...).
pub fn compile(file: &str, source: &str, arch: &str) -> Result<String, KernelError> {
    let ptx = compile_with(file, source, arch, Output::Ptx)?;
    Ok(String::from_utf8_lossy(&ptx).into_owned())
}

/// Compiles one family to a cubin for `arch` (`sm_90`, ...).
pub fn compile_cubin(file: &str, source: &str, arch: &str) -> Result<Vec<u8>, KernelError> {
    compile_with(file, source, arch, Output::Cubin)
}

/// Where compiled kernels are cached: `$STYLEMILL_KERNEL_CACHE`, else `$XDG_CACHE_HOME` or
/// `~/.cache`, under `stylemill/kernels`.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("STYLEMILL_KERNEL_CACHE") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("stylemill/kernels"))
}

/// The name of a family's cache entry for an architecture: a fingerprint of everything NVRTC
/// compiles for it (`compiled`, the shared helpers included, since a change there changes the
/// code), the architecture and the stylemill version.
fn entry_name(file: &str, compiled: &str, arch: &str) -> String {
    let fingerprint = crate::hash::fnv1a([
        compiled.as_bytes(),
        arch.as_bytes(),
        env!("CARGO_PKG_VERSION").as_bytes(),
    ]);
    format!("{file}-{arch}-{fingerprint:016x}.module")
}

/// The cache entry of a family for an architecture, if there is a cache directory.
fn cache_entry(file: &str, source: &str, arch: &str) -> Option<PathBuf> {
    cache_dir().map(|dir| dir.join(entry_name(file, &full_source(source), arch)))
}

/// A compiled family, as the driver loads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Module {
    /// Machine code for the GPU's architecture (an ELF image).
    Cubin(Vec<u8>),
    /// PTX for an older architecture, which the driver translates.
    Ptx(String),
}

const ELF_MAGIC: &[u8] = b"\x7fELF";

impl Module {
    /// What cudarc loads.
    pub fn into_loadable(self) -> cudarc::nvrtc::Ptx {
        match self {
            Module::Cubin(bytes) => cudarc::nvrtc::Ptx::from_binary(bytes),
            Module::Ptx(text) => cudarc::nvrtc::Ptx::from_src(text),
        }
    }

    fn to_bytes(&self) -> &[u8] {
        match self {
            Module::Cubin(bytes) => bytes,
            Module::Ptx(text) => text.as_bytes(),
        }
    }

    fn from_bytes(bytes: Vec<u8>) -> Option<Module> {
        if bytes.starts_with(ELF_MAGIC) {
            Some(Module::Cubin(bytes))
        } else {
            String::from_utf8(bytes).ok().map(Module::Ptx)
        }
    }
}

/// The architectures this NVRTC compiles for, as numbers (`90` for sm_90).
pub fn supported_architectures() -> Result<Vec<u32>, KernelError> {
    Ok(nvrtc()?.supported_architectures())
}

/// What the driver loads for a family on a GPU of `arch`: a cubin for it when this NVRTC knows
/// the architecture, else PTX for the newest architecture it knows below it.
pub fn compile_module(file: &str, source: &str, arch: &str) -> Result<Module, KernelError> {
    let number: u32 = arch.trim_start_matches("sm_").parse().map_err(|_| {
        KernelError::NoArchitecture(format!("{arch} is not an architecture such as sm_90"))
    })?;
    let known = supported_architectures()?;
    if known.contains(&number) {
        return compile_cubin(file, source, arch).map(Module::Cubin);
    }
    let older = known
        .iter()
        .copied()
        .filter(|&a| a < number)
        .max()
        .ok_or_else(|| {
            KernelError::NoArchitecture(format!("this NVRTC compiles for none of {arch} or older"))
        })?;
    log::warn!("NVRTC does not know {arch}: its kernels are compiled as PTX for sm_{older}, which the driver translates at load; a newer CUDA toolkit or nvidia-cuda-nvrtc-cu12 gives machine code");
    compile(file, source, &format!("sm_{older}")).map(Module::Ptx)
}

/// Compiles every family for `archs` (default: this node's GPUs') into the cache, so that the
/// ranks of a job load them instead of compiling. Returns (file, arch, cache entry).
pub fn warm_cache(archs: &[String]) -> Result<Vec<(String, String, PathBuf)>, KernelError> {
    let archs = if archs.is_empty() {
        local_architectures()?
    } else {
        archs.to_vec()
    };
    let mut entries = Vec::new();
    for arch in &archs {
        for (file, source, _) in FAMILIES {
            cached_module(file, source, arch)?;
            let entry = cache_entry(file, source, arch).unwrap_or_default();
            entries.push((file.to_string(), arch.clone(), entry));
        }
    }
    Ok(entries)
}

/// The distinct architectures of this node's GPUs.
fn local_architectures() -> Result<Vec<String>, KernelError> {
    let count = crate::engine::select::gpu_count().map_err(KernelError::NoArchitecture)?;
    let mut archs = Vec::new();
    for ordinal in 0..count {
        let context = cudarc::driver::CudaContext::new(ordinal)
            .map_err(|e| KernelError::NoArchitecture(e.to_string()))?;
        let (major, minor) = context
            .compute_capability()
            .map_err(|e| KernelError::NoArchitecture(e.to_string()))?;
        let arch = format!("sm_{major}{minor}");
        if !archs.contains(&arch) {
            archs.push(arch);
        }
    }
    Ok(archs)
}

/// The compiled family, from the disk cache or compiled (and then cached, written atomically
/// so that ranks starting together never read a half-written entry).
pub fn cached_module(file: &str, source: &str, arch: &str) -> Result<Module, KernelError> {
    let entry = cache_entry(file, source, arch);
    if let Some(module) = entry
        .as_ref()
        .and_then(|path| std::fs::read(path).ok())
        .and_then(Module::from_bytes)
    {
        log::debug!("kernels {file} for {arch} from the cache");
        return Ok(module);
    }
    let module = compile_module(file, source, arch)?;
    if let Some(path) = entry {
        let written = path
            .parent()
            .map(std::fs::create_dir_all)
            .and_then(Result::ok)
            .and_then(|_| {
                let staged = tempfile::NamedTempFile::new_in(path.parent()?).ok()?;
                std::fs::write(staged.path(), module.to_bytes()).ok()?;
                staged.persist(&path).ok()
            });
        if written.is_none() {
            log::warn!("cannot cache compiled kernels in {}", path.display());
        }
    }
    Ok(module)
}

/// What ptxas reports for one kernel.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KernelResources {
    pub kernel: String,
    pub registers: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
}

/// Runs `ptxas -v` on PTX for `arch` and parses each kernel's registers and spills.
pub fn ptxas_report(
    ptxas: &Path,
    file: &str,
    ptx: &str,
    arch: &str,
) -> Result<Vec<KernelResources>, KernelError> {
    let failure = |detail: String| KernelError::Ptxas {
        file: file.to_string(),
        arch: arch.to_string(),
        detail,
    };
    let dir = tempfile::tempdir().map_err(|e| failure(e.to_string()))?;
    let input = dir.path().join("kernels.ptx");
    std::fs::write(&input, ptx).map_err(|e| failure(e.to_string()))?;
    let output = Command::new(ptxas)
        .args(["-v", &format!("-arch={arch}"), "-o"])
        .arg(dir.path().join("kernels.cubin"))
        .arg(&input)
        .output()
        .map_err(|e| failure(e.to_string()))?;
    let log = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(failure(log.into_owned()));
    }
    Ok(parse_ptxas(&log))
}

/// Parses `ptxas -v` output: "Compiling entry function 'NAME'", then lines with
/// "N bytes spill stores, M bytes spill loads" and "Used R registers".
fn parse_ptxas(log: &str) -> Vec<KernelResources> {
    let number_before = |line: &str, word: &str| -> Option<u32> {
        let end = line.find(word)?;
        line[..end].split_whitespace().last()?.parse().ok()
    };
    let mut kernels: Vec<KernelResources> = Vec::new();
    for line in log.lines() {
        if let Some(start) = line.find("Compiling entry function '") {
            let name = &line[start + 26..];
            kernels.push(KernelResources {
                kernel: name
                    .trim_end_matches(['\'', ' '])
                    .split('\'')
                    .next()
                    .unwrap_or(name)
                    .to_string(),
                registers: 0,
                spill_stores: 0,
                spill_loads: 0,
            });
        } else if let Some(current) = kernels.last_mut() {
            if let Some(n) = number_before(line, "bytes spill stores") {
                current.spill_stores = n;
            }
            if let Some(n) = number_before(line, "bytes spill loads") {
                current.spill_loads = n;
            }
            if let Some(n) = number_before(line, "registers") {
                current.registers = n;
            }
        }
    }
    kernels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptxas_output_is_parsed_per_kernel() {
        let log = "ptxas info    : 0 bytes gmem\n\
ptxas info    : Compiling entry function 'conv2d_f32' for 'sm_90'\n\
ptxas info    : Function properties for conv2d_f32\n\
    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n\
ptxas info    : Used 96 registers, 8704 bytes smem, 440 bytes cmem[0]\n\
ptxas info    : Compiling entry function 'norm_apply' for 'sm_90'\n\
ptxas info    : Used 12 registers, 400 bytes cmem[0]\n";
        let kernels = parse_ptxas(log);
        assert_eq!(
            kernels,
            vec![
                KernelResources {
                    kernel: "conv2d_f32".into(),
                    registers: 96,
                    spill_stores: 4,
                    spill_loads: 12
                },
                KernelResources {
                    kernel: "norm_apply".into(),
                    registers: 12,
                    spill_stores: 0,
                    spill_loads: 0
                },
            ]
        );
    }

    #[test]
    fn the_cache_key_changes_with_the_source_and_the_architecture() {
        let name = |compiled, arch| entry_name("conv.cu", compiled, arch);
        assert_ne!(name("a", "sm_90"), name("b", "sm_90"));
        assert_ne!(name("a", "sm_80"), name("a", "sm_90"));
        assert_eq!(name("a", "sm_90"), name("a", "sm_90"));
    }

    #[test]
    fn the_cache_entry_changes_when_only_the_shared_helpers_change() {
        let (file, source, _) = FAMILIES[0];
        let entry = cache_entry(file, source, "sm_90").expect("a cache directory");
        let edited_helpers = format!("{COMMON}// an edit\n{source}");
        assert_ne!(
            entry.file_name().unwrap().to_string_lossy(),
            entry_name(file, &edited_helpers, "sm_90")
        );
        assert_eq!(
            entry.file_name().unwrap().to_string_lossy(),
            entry_name(file, &full_source(source), "sm_90")
        );
    }
}
