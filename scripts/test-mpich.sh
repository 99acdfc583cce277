#!/usr/bin/env bash
# The MPI tests once more with stylemill built against MPICH (Debian's libmpich-dev) instead of
# OpenMPI and launched by MPICH's Hydra (mpiexec.mpich, and jobscripts/mpirun.sh finding MPICH's
# mpirun first on PATH). The build goes to target/mpich; OpenMPI stays the default elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

launcher=target/mpich/launcher
mkdir -p "$launcher"
# A script, not a link: Hydra finds its proxy beside the mpiexec it was started as.
rm -f "$launcher/mpirun"
printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v mpirun.mpich)" > "$launcher/mpirun"
chmod +x "$launcher/mpirun"
export CARGO_TARGET_DIR=target/mpich MPICC=mpicc.mpich STYLEMILL_TEST_MPI=mpich
export PATH="$PWD/$launcher:$PATH"
cargo test --release --test mpi
cargo test --release --test jobscripts mpirun_sh
