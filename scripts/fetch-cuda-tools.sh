#!/usr/bin/env bash
# Unpacks NVRTC and ptxas from their PyPI wheels into target/cuda-tools, where the kernel
# compilation tests look for them. Needs no CUDA toolkit, no GPU and no pip install rights:
# the wheels are downloaded and unzipped, not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=target/cuda-tools
if [ -e "$dest/nvidia/cuda_nvrtc/lib/libnvrtc.so.12" ] && [ -x "$dest/nvidia/cuda_nvcc/bin/ptxas" ]; then
    exit 0
fi
mkdir -p "$dest/wheels"
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$dest/wheels" \
    "nvidia-cuda-nvrtc-cu12==12.9.*" "nvidia-cuda-nvcc-cu12==12.9.*"
for wheel in "$dest"/wheels/*.whl; do
    python3 -m zipfile -e "$wheel" "$dest"
done
chmod +x "$dest/nvidia/cuda_nvcc/bin/ptxas"
