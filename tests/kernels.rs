//! Every CUDA kernel compiles with NVRTC for sm_80 and sm_90, on any machine (no GPU needed),
//! to machine code (a cubin, which drivers older than the NVRTC load) and to PTX; a GPU newer
//! than NVRTC gets PTX for the newest architecture it knows; and ptxas reports each kernel's
//! registers and spills for sm_90.
//!
//! NVRTC and ptxas come from the CUDA toolkit or from PyPI (`scripts/test-tools.sh`
//! unpacks nvidia-cuda-nvrtc-cu12 and nvidia-cuda-nvcc-cu12 into target/cuda-tools, where these
//! tests look by default; `STYLEMILL_NVRTC_DIR` and `STYLEMILL_PTXAS` override).

use std::path::PathBuf;
use stylemill::engine::cuda::kernels::{
    compile, compile_module, ptxas_report, supported_architectures, Module, FAMILIES,
};
use stylemill::engine::cuda::sass::{main_loops, MainLoop};
use stylemill::engine::cuda::{conv_launch, ConvKernel};
use stylemill::engine::Precision;
use stylemill::model::styles::load_style;

fn tools() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/cuda-tools/nvidia")
}

fn use_nvrtc() {
    if std::env::var_os("STYLEMILL_NVRTC_DIR").is_none() {
        // SAFETY: set before any thread of this test binary reads the environment.
        unsafe { std::env::set_var("STYLEMILL_NVRTC_DIR", tools().join("cuda_nvrtc/lib")) };
    }
}

#[test]
fn every_kernel_compiles_for_sm80_and_sm90() {
    use_nvrtc();
    for (file, source, kernels) in FAMILIES {
        for arch in ["sm_80", "sm_90"] {
            let ptx = compile(file, source, arch).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                ptx.contains(&format!(".target {arch}")),
                "{file} for {arch}"
            );
            for kernel in kernels {
                assert!(
                    ptx.contains(&format!(".entry {kernel}(")),
                    "{kernel} missing from {file}"
                );
            }
        }
    }
}

#[test]
fn ptxas_reports_registers_and_no_spills_for_sm90() {
    use_nvrtc();
    let ptxas = std::env::var_os("STYLEMILL_PTXAS")
        .map(PathBuf::from)
        .unwrap_or_else(|| tools().join("cuda_nvcc/bin/ptxas"));
    assert!(
        ptxas.exists(),
        "ptxas not found at {}: run scripts/test-tools.sh",
        ptxas.display()
    );
    let mut report = Vec::new();
    for (file, source, kernels) in FAMILIES {
        let ptx = compile(file, source, "sm_90").unwrap();
        let resources = ptxas_report(&ptxas, file, &ptx, "sm_90").unwrap_or_else(|e| panic!("{e}"));
        for kernel in kernels {
            let found = resources
                .iter()
                .find(|r| r.kernel == *kernel)
                .unwrap_or_else(|| panic!("{kernel} not reported"));
            assert!(found.registers > 0 && found.registers <= 255, "{found:?}");
            assert_eq!(
                (found.spill_stores, found.spill_loads),
                (0, 0),
                "{kernel} spills: {found:?}"
            );
            eprintln!(
                "{kernel:<20} sm_90: {:>3} registers, {} B spill stores, {} B spill loads",
                found.registers, found.spill_stores, found.spill_loads
            );
        }
        report.extend(resources);
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/kernel-resources-sm_90.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
}

#[test]
fn every_family_compiles_to_machine_code_for_sm80_and_sm90() {
    use_nvrtc();
    for (file, source, kernels) in FAMILIES {
        for (arch, number) in [("sm_80", 80u32), ("sm_90", 90)] {
            let Module::Cubin(cubin) = compile_module(file, source, arch).unwrap() else {
                panic!("{file} for {arch} is not machine code");
            };
            assert_eq!(&cubin[..4], b"\x7fELF", "{file} for {arch}: an ELF image");
            const EM_CUDA: u16 = 190;
            assert_eq!(u16::from_le_bytes([cubin[18], cubin[19]]), EM_CUDA);
            // The ELF flags of a CUDA image hold the architecture in their low byte.
            let flags = u32::from_le_bytes(cubin[48..52].try_into().unwrap());
            assert_eq!(flags & 0xff, number, "{file} for {arch}: flags {flags:#x}");
            for kernel in kernels {
                assert!(
                    cubin.windows(kernel.len()).any(|w| w == kernel.as_bytes()),
                    "{kernel} missing from {file}'s cubin for {arch}"
                );
            }
        }
    }
}

#[test]
fn a_gpu_newer_than_nvrtc_gets_ptx_for_the_newest_architecture_it_knows() {
    use_nvrtc();
    let newest = *supported_architectures().unwrap().iter().max().unwrap();
    let (file, source, _) = FAMILIES[2];
    let future = format!("sm_{}", newest + 100);
    match compile_module(file, source, &future).unwrap() {
        Module::Ptx(ptx) => assert!(ptx.contains(&format!(".target sm_{newest}")), "{ptx}"),
        Module::Cubin(_) => panic!("NVRTC cannot make machine code for {future}"),
    }
}

/// The most instructions each kernel's main loop may issue per tensor-core or fp32 multiply-add
/// instruction, on sm_80 and sm_90, and whether loops may remain inside it: today's counts with
/// a little room, so that a change which makes a loop costlier fails here. The fp32 GEMMs stage
/// each k-tile in straight code, so their counts are exact per iteration; the tensor-core GEMMs'
/// include the input pixels' addresses, which their loop works out only at a new tap (one tile
/// in ci / 32): at 128 channels they overstate an average iteration by about half. The direct
/// kernels stage their window in loops (unrolled, they take too many registers), which sm_80's
/// listing puts inside the main loop and counts once instead of about 20 times, some 10% of
/// that loop's instructions.
const BUDGETS: [(&str, f64, bool); 8] = [
    ("conv2d_f32", 2.3, false),
    ("conv2d_f32_n32", 3.1, false),
    ("conv2d_bf16_tc", 9.5, false),
    ("conv2d_bf16_tc_n32", 17.5, false),
    ("conv2d_direct_to32", 1.5, true),
    ("conv2d_direct_to3", 2.1, true),
    ("conv2d_direct_to3_tc", 3.0, false),
    ("conv2d_direct_to32_tc", 2.0, false),
];

fn nvdisasm() -> PathBuf {
    let path = std::env::var_os("STYLEMILL_NVDISASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/cuda-tools-13/nvidia/cu13/bin/nvdisasm")
        });
    assert!(
        path.exists(),
        "nvdisasm not found at {}: run scripts/test-tools.sh",
        path.display()
    );
    path
}

/// An H100 SXM: 132 SMs of 4 schedulers, each issuing one warp instruction per clock, at the
/// 1.98 GHz boost clock; fp32 FFMA peak 66.9 TFLOP/s, dense BF16 tensor peak 989 TFLOP/s.
const H100_SMS: f64 = 132.0;
const H100_CLOCK_HZ: f64 = 1.98e9;
const H100_FP32_TFLOPS: f64 = 66.9;
const H100_BF16_TFLOPS: f64 = 989.0;

/// What the main-loop counts imply for each layer of the network at 1920x1080 (batch 1) on an
/// H100, assuming that the main loop is all the time and that it is bound by instruction issue
/// or by its multiply-add pipe, whichever is slower: warp instructions = multiply-adds executed
/// (tile shapes and padding included) / multiply-adds per iteration (2048 per HMMA.16816, 32 per
/// FFMA) x instructions per iteration, against the multiply-adds executed at the pipe's peak.
/// Memory traffic, latency, prologues and epilogues, and InstanceNorm are left out: a lower
/// bound on the time.
fn model_at_1080p(loops: &[MainLoop]) -> Vec<String> {
    let net = load_style("mosaic").unwrap();
    let mut rows = Vec::new();
    for precision in [Precision::Fp32, Precision::Fast] {
        let fast = precision == Precision::Fast;
        let (mut h, mut w) = (1080, 1920);
        let (mut total_ms, mut total_flop) = (0.0, 0.0);
        for conv in net.convolutions() {
            let tensor_cores = precision == Precision::Fast;
            let plan = conv_launch(conv, 1, h, w, tensor_cores);
            let (oh, ow) = plan.out;
            let taps = conv.kernel * conv.kernel;
            let useful = (oh * ow * taps * conv.in_channels * conv.out_channels) as f64;
            let (grid_x, grid_y, _) = plan.shape.grid;
            let ctas = (grid_x * grid_y) as f64;
            let executed = match (plan.kernel.direct_tile(), plan.kernel) {
                (Some((rows, columns)), ConvKernel::DirectTo3TensorCores) => {
                    // The 3 outputs take an MMA's 8 columns.
                    ctas * (rows * columns * taps * conv.in_channels * 8) as f64
                }
                (Some((rows, columns)), ConvKernel::DirectTo32TensorCores) => {
                    // A kernel row is 80 k: 5 steps of two taps of 3 channels padded to 8.
                    ctas * (rows * columns * conv.kernel * 80 * conv.out_channels) as f64
                }
                (Some((rows, columns)), _) => {
                    ctas * (rows * columns * taps * conv.in_channels * conv.out_channels) as f64
                }
                (None, kernel) => {
                    let tile = kernel.gemm_tile().unwrap();
                    let reduction =
                        (taps * conv.in_channels).div_ceil(tile.reduction) * tile.reduction;
                    ctas * (tile.pixels * tile.channels * reduction) as f64
                }
            };
            let main = loops
                .iter()
                .find(|l| l.kernel == plan.kernel.name())
                .unwrap();
            let per_iteration = (main.mma * 2048 + main.ffma * 32) as f64;
            let warp_instructions = executed / per_iteration * main.instructions as f64;
            let peak = if plan.kernel.uses_tensor_cores() {
                H100_BF16_TFLOPS
            } else {
                H100_FP32_TFLOPS
            };
            let issue_seconds = warp_instructions / (H100_SMS * 4.0 * H100_CLOCK_HZ);
            let seconds = issue_seconds.max(2.0 * executed / (peak * 1e12));
            let share = 2.0 * useful / seconds / 1e12 / peak;
            rows.push(format!(
                "| {} | {}->{} k{} s{}{} at {oh}x{ow} | {} | {:.2} | {:.1}% |",
                if fast { "fast" } else { "fp32" },
                conv.in_channels,
                conv.out_channels,
                conv.kernel,
                conv.stride,
                if conv.upsample { " up" } else { "" },
                plan.kernel.name(),
                seconds * 1e3,
                100.0 * share
            ));
            total_ms += seconds * 1e3;
            total_flop += 2.0 * useful;
            (h, w) = (oh, ow);
        }
        rows.push(format!(
            "| {} | all convolutions | | {total_ms:.1} | {:.1} TFLOP/s |",
            if fast { "fast" } else { "fp32" },
            total_flop / (total_ms / 1e3) / 1e12
        ));
    }
    rows
}

#[test]
fn every_convolution_main_loop_stays_within_its_instruction_budget() {
    use_nvrtc();
    let (file, source, kernels) = FAMILIES[0];
    for arch in ["sm_80", "sm_90"] {
        let Module::Cubin(cubin) = compile_module(file, source, arch).unwrap() else {
            panic!("{file} for {arch} is not machine code");
        };
        let loops = main_loops(&nvdisasm(), &cubin).unwrap_or_else(|e| panic!("{e}"));
        for kernel in kernels {
            let found = loops
                .iter()
                .find(|l| l.kernel == *kernel)
                .unwrap_or_else(|| panic!("{kernel} not in the listing for {arch}"));
            let &(_, budget, staging_loops) = BUDGETS.iter().find(|(k, ..)| k == kernel).unwrap();
            let per = found.instructions_per_multiply_add();
            eprintln!(
                "{kernel:<20} {arch}: {:>4} instructions, {:>2} HMMA, {:>3} FFMA: {per:.2} per multiply-add (budget {budget})",
                found.instructions, found.mma, found.ffma
            );
            assert!(
                found.mma + found.ffma > 0,
                "{kernel} {arch}: no main loop found"
            );
            assert_eq!(found.local_memory, 0, "{kernel} {arch} uses local memory");
            assert!(
                staging_loops || found.inner_loops == 0,
                "{kernel} {arch}: its main loop holds other loops, not unrolled: {found:?}"
            );
            assert!(
                per <= budget,
                "{kernel} {arch}: {per:.2} instructions per multiply-add, over its budget of {budget}: {found:?}"
            );
        }
        if arch == "sm_90" {
            let table = model_at_1080p(&loops).join("\n");
            eprintln!("{table}");
            let path =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/kernel-model-1080p.md");
            std::fs::write(path, table).unwrap();
        }
    }
}
