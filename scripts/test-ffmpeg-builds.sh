#!/usr/bin/env bash
# The video tests once more with another ffmpeg first on PATH: the static 8.0 build that
# scripts/test-tools.sh unpacks (target/ffmpeg-builds/8.0), so that a newer ffmpeg's changes
# (options, parsers, messages) fail the tests rather than a user's job.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$PWD/target/ffmpeg-builds/8.0/bin:$PATH"
ffmpeg -version | head -n 1
cargo test --release --test video --test seek --test errors --test mpi
