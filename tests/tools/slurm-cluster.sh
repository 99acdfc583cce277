#!/usr/bin/env bash
# A throwaway single-node Slurm cluster on loopback for the Slurm test (needs root, and the
# Debian packages slurm-wlm and munge).
#
#   slurm-cluster.sh start DIR   write DIR/slurm.conf, start munged (if needed), slurmctld and
#                                slurmd, wait for the node; export SLURM_CONF=DIR/slurm.conf
#   slurm-cluster.sh stop DIR    stop this cluster's daemons
#
# The node advertises two stand-in GPUs (Slurm insists on a device file per GPU: /dev/null and
# /dev/zero serve), so that job scripts that ask for --gpus-per-task run unchanged on a machine
# without GPUs.
set -euo pipefail
action=$1
dir=$(realpath -m "$2")
conf=$dir/slurm.conf
node=$(hostname -s)

stop() {
    for daemon in slurmd slurmctld; do
        if [ -f "$dir/$daemon.pid" ]; then
            kill "$(cat "$dir/$daemon.pid")" 2>/dev/null || true
        fi
    done
}

if [ "$action" = stop ]; then
    stop
    exit 0
fi

mkdir -p "$dir/state" "$dir/spool" "$dir/logs"
cpus=$(nproc)
cat > "$conf" <<CONF
ClusterName=stylemilltest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=${SLURMCTLD_PORT:-16817}
SlurmdPort=${SLURMD_PORT:-16818}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/logs/slurmctld.log
SlurmdLogFile=$dir/logs/slurmd.log
GresTypes=gpu
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
cat > "$dir/gres.conf" <<CONF
AutoDetect=off
NodeName=$node Name=gpu File=/dev/null
NodeName=$node Name=gpu File=/dev/zero
CONF

if ! pgrep -x munged >/dev/null; then
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    [ -f /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
    runuser -u munge -- /usr/sbin/munged
fi
export SLURM_CONF=$conf
stop
/usr/sbin/slurmctld -f "$conf"
/usr/sbin/slurmd -f "$conf" -N "$node"
for _ in $(seq 1 60); do
    if sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed)'; then
        exit 0
    fi
    sleep 0.5
done
echo "the Slurm node did not come up; logs in $dir/logs" >&2
tail -n 20 "$dir"/logs/*.log >&2 || true
exit 1
