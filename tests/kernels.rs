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
