#!/usr/bin/env bash
# A real one-node Slurm on this machine for the cluster tests: `start` (as root) installs, configures and starts it, `stop` ends it.
#   bash .ci/slurm-cluster.sh start   # munged, slurmctld, slurmd; waits until the node is idle
#   bash .ci/slurm-cluster.sh stop    # ends the daemons this script started, by the ids in their pid files
# Everything it owns lives in $PAUSEPIPE_SLURM_DIR (default /var/tmp/pausepipe-slurm): state, logs, pid files and
# the job completion log (JobCompType=jobcomp/filetxt, one line per finished job), which the tests count jobs in.
# Slurm's clients (sbatch, squeue) read /etc/slurm/slurm.conf; a configuration there that this script did not write
# (a real cluster's) is never replaced.
set -euo pipefail
cmd=${1:-start}
dir=${PAUSEPIPE_SLURM_DIR:-/var/tmp/pausepipe-slurm}
conf=/etc/slurm/slurm.conf
marker='# written by pausepipe .ci/slurm-cluster.sh'
pidfiles=("$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid")

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop() {
  for f in "${pidfiles[@]}"; do
    alive "$f" || continue
    local pid
    pid=$(cat "$f")
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    # A daemon that ignores SIGTERM for 10 s would keep the ports busy for the next start.
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    rm -f "$f"
  done
}

case "$cmd" in
  stop) stop; exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

if [ "$(id -u)" != 0 ]; then echo "$0: the daemons must start as root" >&2; exit 1; fi
if [ -f "$conf" ] && ! grep -qF "$marker" "$conf"; then
  echo "$0: $conf was not written by this script (a real cluster's?); not replacing it" >&2
  exit 1
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  # Debian 12 packages Slurm 22.05; --no-install-recommends keeps out the database daemon and mail tools.
  apt-get update >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

host=$(hostname -s)
mkdir -p "$dir/ctld" "$dir/d" "$dir/log" "$dir/munge" /etc/slurm /run/munge
# munged runs as the munge user: its socket, pid file and log are in folders it owns.
chown munge:munge /run/munge "$dir/munge"
if [ ! -s /etc/munge/munge.key ]; then
  mungekey -c >/dev/null 2>&1 || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
alive "$dir/munge/munged.pid" || runuser -u munge -- /usr/sbin/munged --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log"

# Leave 1 GiB to the system; a job that does not ask (--mem) gets its CPUs' share of the rest.
mem=$(( $(free -m | awk '/Mem:/{print $2}') - 1024 ))
cpus=$(nproc)
cat > "$conf" <<CONF
$marker
ClusterName=pausepipe
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/d
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$(( mem / cpus ))
ReturnToService=2
# Finished jobs stay visible to squeue and scontrol for 5 minutes; there is no accounting database (no sacct).
MinJobAge=300
# Memory limits are enforced without cgroups: a job above its --mem is killed (sampled every second).
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.log
# A cancelled or timed-out job gets SIGTERM, then SIGKILL after this many seconds.
KillWait=5
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF

alive "$dir/slurmctld.pid" || /usr/sbin/slurmctld
alive "$dir/slurmd.pid" || /usr/sbin/slurmd
for _ in $(seq 1 30); do
  if sinfo -h -o %t 2>/dev/null | grep -q idle; then sinfo; exit 0; fi
  sleep 1
done
echo "$0: Slurm did not come up; see $dir/log/" >&2
exit 1
