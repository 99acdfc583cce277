#!/usr/bin/env bash
# On the GPU machine (NVIDIA driver, CUDA 13 toolkit, Python with PyTorch; no Rust, MPI or
# ffmpeg), in the project tree with target/gpu-bundle.tar.xz carried along (made here by
# scripts/gpu-bundle.sh), in one command (each step has its own time limit, 13 minutes in all;
# about 4 minutes on an H100 machine):
# 1. every GPU test (tests/cuda.rs: each kernel against the CPU engine, the golden vectors in
#    fp32 and fast mode, batches, a video with --device cuda under 1 and 2 ranks);
# 2. the GPU benchmark against PyTorch on the same GPU (benches/gpu.rs: fp32 with TF32 off,
#    PyTorch's default, half precision channels_last with cudnn.benchmark; 720x720 and
#    1920x1080; batch 1 and 8) with the GPU time of each kernel from CUDA events;
# 3. a 1080p video through `stylemill run --device cuda`, its frame rate and time split, in
#    both precisions on one rank and in fast mode on 4 ranks sharing the GPU;
# 4. Nsight Compute's view of every kernel of one 1080p frame (ncu-*.csv), where ncu exists;
# writing logs, JSON and summary.md into OUT_DIR/gpu-check (default: $OUT, else target).
# Exits non-zero when a test fails or a step cannot run.
#
# Usage: scripts/gpu-check.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
tree=$PWD
results="${1:-${OUT:-$tree/target}}/gpu-check"
mkdir -p "$results"
exec > >(tee "$results/log.txt") 2>&1
started=$SECONDS
fail() {
    echo "gpu-check: $*" >&2
    exit 1
}
step() { echo "== $* ($((SECONDS - started)) s)"; }

[ -f target/gpu-bundle.tar.xz ] || fail "target/gpu-bundle.tar.xz is missing: make it with scripts/gpu-bundle.sh and carry it along"

step "unpacking the bundle"
unpacked=$(mktemp -d)
trap 'rm -rf "$unpacked"' EXIT
tar -C "$unpacked" -xJf target/gpu-bundle.tar.xz || fail "cannot unpack target/gpu-bundle.tar.xz"
bundle=$unpacked/stylemill-gpu
python3 scripts/bundle_weights.py restore "$bundle" models || fail "cannot restore the bundle's executables"

export PATH="$bundle/bin:$PATH"
export STYLEMILL_BIN=$bundle/bin/stylemill
export STYLEMILL_PROJECT_DIR=$tree
export STYLEMILL_FIXTURES=$tree/tests/fixtures
export STYLEMILL_TEST_TOOLS_DIR=$bundle/bin
export STYLEMILL_KERNEL_CACHE=$results/kernel-cache
export STYLEMILL_BENCH_RESULTS=$results
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

step "doctor"
RUST_LOG=info stylemill doctor >"$results/doctor.txt" 2>&1
cat "$results/doctor.txt"
nvidia-smi >"$results/nvidia-smi.txt" 2>&1 || fail "no NVIDIA GPU here (nvidia-smi: $(head -n 1 "$results/nvidia-smi.txt"))"

# NVRTC of the CUDA toolkit (libnvrtc.so.13 or .12), else the one PyTorch's wheels carry.
nvrtc_dir=""
for dir in ${CUDA_HOME:+"$CUDA_HOME/lib64"} /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-*/lib64 \
    $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null | xargs -n 1 -I{} find {}/nvidia -maxdepth 3 -name lib -type d 2>/dev/null); do
    if [ -e "$dir/libnvrtc.so.13" ] || [ -e "$dir/libnvrtc.so.12" ]; then
        nvrtc_dir=$dir
        break
    fi
done
[ -n "$nvrtc_dir" ] || fail "NVRTC (libnvrtc.so.13 or .12) not found in the CUDA toolkit or PyTorch's packages"

export STYLEMILL_NVRTC_DIR=$nvrtc_dir
# NVRTC loads its builtins library by name at the first compile: the bundle's loader must find it.
export LD_LIBRARY_PATH="$nvrtc_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

step "GPU tests"
timeout 210 cuda-tests --ignored --test-threads=1 >"$results/tests.txt" 2>&1
tests_status=$?
tail -n 30 "$results/tests.txt"

step "benchmark against PyTorch"
timeout 170 gpu-bench >"$results/bench.txt" 2>&1
bench_status=$?
tail -n 5 "$results/bench.txt"

step "a 1080p video through stylemill run --device cuda"
clip=$results/clip-1080p.mp4
ffmpeg -v error -y -nostdin -f lavfi -i testsrc2=size=1920x1080:rate=30 -f lavfi -i sine=frequency=440 \
    -t 8 -c:v libx264 -preset veryfast -pix_fmt yuv420p -c:a aac -shortest "$clip"
end_to_end_status=0
for precision in fast fp32; do
    timeout 60 env RUST_LOG=info stylemill run "$clip" -o "$results/styled-$precision.mp4" --style mosaic \
        --device cuda --precision "$precision" --batch 8 --overwrite --report "$results/run-$precision.json" \
        >"$results/run-$precision.txt" 2>&1 || end_to_end_status=1
    tail -n 2 "$results/run-$precision.txt"
    rm -f "$results/styled-$precision.mp4"
done
# x264 encodes with a fixed 4 threads per rank (its output depends on its thread count), so one
# rank is bound by its encoder: 4 ranks sharing the GPU encode side by side.
timeout 60 mpirun --oversubscribe --bind-to none -np 4 env RUST_LOG=info stylemill run "$clip" \
    -o "$results/styled-np4.mp4" --style mosaic --device cuda --precision fast --batch 8 \
    --overwrite --report "$results/run-fast-np4.json" >"$results/run-fast-np4.txt" 2>&1 || end_to_end_status=1
tail -n 1 "$results/run-fast-np4.txt"
rm -f "$results/styled-np4.mp4" "$clip"

# What bounds each kernel: Nsight Compute's speed-of-light, occupancy and warp-stall sections
# for every kernel of one 1080p frame in each precision (clocks left as the GPU has them).
# Informational: a machine without ncu, or a profile that fails, does not fail the check.
step "Nsight Compute on one 1080p frame"
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -n 1)
if [ -n "$ncu" ]; then
    frame=$results/frame-1080p.mp4
    ffmpeg -v error -y -nostdin -f lavfi -i testsrc2=size=1920x1080:rate=30 -t 0.1 -c:v libx264 -pix_fmt yuv420p "$frame"
    for precision in fast fp32; do
        timeout 90 "$ncu" --clock-control none --target-processes all -k 'regex:conv2d|norm_' \
            --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
            --csv --page details --log-file "$results/ncu-$precision.csv" \
            stylemill run "$frame" -o "$results/profiled.mp4" --style mosaic --device cuda \
            --precision "$precision" --batch 1 --limit 1 --overwrite >"$results/ncu-$precision.txt" 2>&1 ||
            echo "ncu ($precision) failed: see ncu-$precision.txt"
        rm -f "$results/profiled.mp4"
    done
    rm -f "$frame"
else
    echo "no ncu here: no profile"
fi

step "summary"
python3 - "$results" "$tests_status" "$bench_status" "$end_to_end_status" <<'PYTHON'
import json, pathlib, sys
results = pathlib.Path(sys.argv[1])
tests, bench, end_to_end = (int(s) for s in sys.argv[2:5])
lines = ["# stylemill on the GPU", ""]
lines.append(f"- GPU tests: {'passed' if tests == 0 else 'FAILED'} (tests.txt)")
lines.append(f"- benchmark: {'ran' if bench == 0 else 'FAILED'} (bench.txt, gpu.json)")
lines.append(f"- 1080p video run: {'ran' if end_to_end == 0 else 'FAILED'} (run-*.txt, run-*.json)")
for line in (results / "tests.txt").read_text(errors="replace").splitlines():
    if line.startswith("test ") and " ... " in line:
        lines.append(f"  - {line[5:]}")
gpu = results / "gpu.json"
if gpu.exists():
    report = json.loads(gpu.read_text())
    lines += ["", f"## Milliseconds per frame at batch 8 on {report.get('gpu')}", "",
              "| size | fast | fp32 | fast, kernels | fp32, kernels | PyTorch fp32 (TF32 off) | PyTorch default | PyTorch best |",
              "|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"
    for size, row in report["summary"].items():
        lines.append(f"| {size} | " + " | ".join(fmt(row.get(k)) for k in ("fast_ms", "fp32_ms", "fast_kernels_ms", "fp32_kernels_ms", "pytorch_fp32_ms", "pytorch_default_ms", "pytorch_best_ms")) + " |")
    lines.append(f"\nMeasured bf16 matrix peak: {fmt(report.get('bf16_peak_tflops'))} TFLOP/s")
    for name, table in report.get("kernels", {}).items():
        lines += ["", f"## GPU time per kernel, {name} ({table['ms_per_frame_total']:.2f} ms per frame)", "",
                  "| kernel | launches per frame | ms per frame | share |", "|---|---|---|---|"]
        for row in sorted(table["kernels"], key=lambda r: -r["ms_per_frame"]):
            lines.append(f"| {row['kernel']} | {row['launches_per_frame']:.3g} | {row['ms_per_frame']:.3f} | {100 * row['share']:.1f}% |")
for precision in ("fast", "fp32", "fast-np4"):
    run = results / f"run-{precision}.txt"
    if run.exists():
        lines += ["", f"## 1080p video, {precision}", "", "```"] + run.read_text(errors="replace").splitlines()[-4:] + ["```"]
(results / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PYTHON
step "done: $results"
[ "$tests_status" -eq 0 ] && [ "$bench_status" -eq 0 ] && [ "$end_to_end_status" -eq 0 ]
