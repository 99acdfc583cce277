#!/usr/bin/env bash
# Run stylemill across the GPUs of one or more nodes with mpirun, OpenMPI's or MPICH's (Hydra):
# the script asks mpirun which it is and passes each its own flags.
#
# Submit (from a node that can reach the others over ssh, with stylemill installed on all):
#   jobscripts/mpirun.sh INPUT OUTPUT STYLE [more `stylemill run` options]
# or with INPUT, OUTPUT and STYLE in the environment. The output is written by rank 0. The input
# is read directly by every rank that sees it at the same path (a shared filesystem); a node that
# does not receives one copy from rank 0 over MPI.
#
# Edit or set in the environment:
#   HOSTFILE        a hostfile (OpenMPI: "node1 slots=4" per line; MPICH: "node1:4"); or
#   HOSTS           hosts and slots, such as "node1:4,node2:4" (default: localhost)
#   RANKS_PER_NODE  ranks per node = GPUs per node (default: the GPUs nvidia-smi lists, or 1)
#   STYLEMILL       the stylemill binary, same path on every node (default: stylemill on PATH)
#   MPIRUN_ARGS     more mpirun options, e.g. "--mca btl_tcp_if_include eth0"
#
# GPU binding: each rank takes GPU (node-local rank mod GPUs on its node) by itself, found with
# MPI's shared-memory communicator, so no CUDA_VISIBLE_DEVICES juggling is needed. Ranks are not
# bound to cores (--bind-to none) so that a CPU rank and its ffmpeg processes use the node's cores.
set -euo pipefail

input=${1:-${INPUT:?usage: mpirun.sh INPUT OUTPUT STYLE [options]}}
output=${2:-${OUTPUT:?usage: mpirun.sh INPUT OUTPUT STYLE [options]}}
style=${3:-${STYLE:?usage: mpirun.sh INPUT OUTPUT STYLE [options]}}
shift $(( $# < 3 ? $# : 3 ))

stylemill=${STYLEMILL:-stylemill}
if [ -z "${RANKS_PER_NODE:-}" ]; then
    RANKS_PER_NODE=$(nvidia-smi --list-gpus 2>/dev/null | grep -c '^GPU' || true)
    [ "$RANKS_PER_NODE" -gt 0 ] || RANKS_PER_NODE=1
fi

placement=()
if [ -n "${HOSTFILE:-}" ]; then
    nodes=$(grep -cvE '^\s*(#|$)' "$HOSTFILE")
    placement=(--hostfile "$HOSTFILE")
else
    hosts=${HOSTS:-localhost:$RANKS_PER_NODE}
    nodes=$(tr ',' '\n' <<<"$hosts" | grep -c .)
    placement=(--host "$hosts")
fi
ranks=$(( nodes * RANKS_PER_NODE ))

extra=()
# shellcheck disable=SC2206
[ -z "${MPIRUN_ARGS:-}" ] || extra+=($MPIRUN_ARGS)

echo "stylemill: $ranks ranks on $nodes node(s), $RANKS_PER_NODE per node" >&2
if mpirun --version 2>&1 | grep -q "Open MPI"; then
    [ "$(id -u)" -ne 0 ] || extra+=(--allow-run-as-root)
    exec mpirun -np "$ranks" "${placement[@]}" --map-by "ppr:${RANKS_PER_NODE}:node" --bind-to none \
        -x PATH -x LD_LIBRARY_PATH -x RUST_LOG -x STYLEMILL_NVRTC_DIR -x STYLEMILL_KERNEL_CACHE \
        "${extra[@]}" "$stylemill" run "$input" -o "$output" --style "$style" "$@"
fi
# MPICH's Hydra: the environment travels by default and ranks are not bound to cores.
if [ -n "${HOSTFILE:-}" ]; then
    placement=(-f "$HOSTFILE")
else
    placement=(-hosts "$hosts")
fi
exec mpirun -n "$ranks" "${placement[@]}" -ppn "$RANKS_PER_NODE" \
    "${extra[@]}" "$stylemill" run "$input" -o "$output" --style "$style" "$@"
