#!/usr/bin/env bash
# The video tests once more with each other supported ffmpeg first on PATH, as scripts/test-tools.sh
# prepares them under target/ffmpeg-builds: 4.4 (Ubuntu 22.04's, the oldest supported), 7.1
# (Ubuntu 25.10's) and 8.0 (a static build), so that an older or newer ffmpeg's differences
# (options, parsers, messages) fail the tests rather than a user's job. Pass versions to run only
# those.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests make and check their clips with the machine's ffmpeg (tests/common: tool).
STYLEMILL_TEST_TOOLS_DIR="$(dirname "$(command -v ffmpeg)")"
export STYLEMILL_TEST_TOOLS_DIR
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(4.4 7.1 8.0)
for version in "${versions[@]}"; do
    (
        export PATH="$PWD/target/ffmpeg-builds/$version/bin:$PATH"
        ffmpeg -version | head -n 1
        cargo test --release --test video --test inputs --test seek --test errors --test mpi
    )
done
