#!/usr/bin/env bash
# Tests configs/slurm/*.sbatch under a real single-node Slurm that this script starts and stops:
# munged, slurmctld and slurmd from a minimal slurm.conf in a temporary folder (one node with this
# machine's CPUs, proctrack/linuxproc, task/none; no systemd). Runs as root (through sudo if needed).
#
# For each script, adjusted to one node with sbatch options (the script files are used as they are):
#   1. sbatch it on a small X/O job that writes a checkpoint every 10 steps;
#   2. mid-run, `scancel --signal=USR1 --batch JOB`: ptrain must write a checkpoint and exit with 3;
#   3. `scontrol requeue JOB` (and a start time of now, which skips the requeue delay): the job must
#      resume from that checkpoint and end with model.safetensors bit-identical to an uninterrupted
#      run (one process, one thread, outside Slurm).
#
# Needs the release build (.build/release/ptrain) and the MPI build (.build-mpi/release/ptrain,
# `swift build -c release --traits MPI --scratch-path .build-mpi`); builds what is missing.
# PTRAIN_SLURM_KEEP=1 keeps the temporary folder (daemon logs, job logs, run folders).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

say() { echo "test-slurm: $*" >&2; }
job=""
die() {
    say "FAIL: $*"
    if [ -n "$job" ]; then scontrol show job "$job" >&2 || true; fi
    exit 1
}

if [ "$(id -u)" -ne 0 ]; then exec sudo -E "$repo/scripts/test-slurm.sh" "$@"; fi  # it starts munged, slurmctld and slurmd as root
if ! command -v slurmctld > /dev/null || ! command -v munged > /dev/null; then
    say "installing slurm-wlm and munge"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge > /dev/null
fi

ptrain=$repo/.build/release/ptrain
ptrain_mpi=$repo/.build-mpi/release/ptrain
[ -x "$ptrain" ] || swift build -c release
[ -x "$ptrain_mpi" ] || swift build -c release --traits MPI --scratch-path .build-mpi

tmp=$(mktemp -d)
chmod 700 "$tmp"
pids=()
stop_all() {
    local status=$?
    if [ -f "$tmp/slurm.conf" ]; then scancel --full --quiet --user=root 2> /dev/null || true; fi
    # Daemons in reverse order of start, by the process IDs they wrote.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        local pid
        pid=$(cat "${pids[i]}" 2> /dev/null) || continue
        kill "$pid" 2> /dev/null || continue
        for _ in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
    done
    if [ "$status" -ne 0 ] || [ "${PTRAIN_SLURM_KEEP:-0}" = 1 ]; then
        say "kept $tmp (daemon logs, job logs, run folders)"
    else
        rm -rf "$tmp"
    fi
}
trap stop_all EXIT

# --- munge: a fresh key and socket of our own.
mkdir -m 700 "$tmp/munge"
mungekey --create --keyfile="$tmp/munge/munge.key"
chmod 400 "$tmp/munge/munge.key"
munged --force --key-file="$tmp/munge/munge.key" --socket="$tmp/munge/munge.socket" \
    --pid-file="$tmp/munge/munged.pid" --log-file="$tmp/munge/munged.log" --seed-file="$tmp/munge/munged.seed"
pids+=("$tmp/munge/munged.pid")

# --- Slurm: one node, this machine's CPUs as slurmd sees them; ports unlikely to be taken.
host=$(hostname -s)
node=$(slurmd -C | head -n 1 | sed -e 's/ RealMemory=[0-9]*//' -e "s/^NodeName=[^ ]*/NodeName=$host/")
cpus=$(nproc)
[ "$cpus" -ge 2 ] || die "needs at least 2 CPUs (two ranks of one CPU each)"
port=$((20000 + RANDOM % 20000))
mkdir -p "$tmp/state" "$tmp/spool"
cat > "$tmp/slurm.conf" << EOF
ClusterName=ptraintest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/munge.socket
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=pmix
JobRequeue=1
ReturnToService=2
MinJobAge=600
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$tmp/slurm.conf
slurmctld -i
pids+=("$tmp/slurmctld.pid")
slurmd
pids+=("$tmp/slurmd.pid")

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "timed out after ${seconds}s waiting for $what"
            tail -n 20 "$tmp/slurmctld.log" "$tmp/slurmd.log" >&2 || true
            return 1
        fi
        sleep 0.2
    done
}
node_idle() { [ "$(sinfo -h -n "$host" -o %T 2> /dev/null)" = idle ]; }
wait_for 60 "the node to become idle" node_idle || die "slurmd did not register"
say "Slurm $(sinfo -V | cut -d' ' -f2) up: node $host, $cpus CPUs, controller port $port"

field() { scontrol show job "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }
ended() { case "$(field "$1" JobState)" in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) return 0 ;; *) return 1 ;; esac; }
has_checkpoint() { compgen -G "$1/checkpoints/step-*" > /dev/null; }

# --- The job: X/O with wider layers, so that a step takes milliseconds of compute and the job runs
# a few seconds whatever the disk's speed: long enough to be stopped between two checkpoints.
config=$tmp/xo-wide.yaml
cat > "$config" << EOF
name: xo-wide
data: {source: xo, size: 16, train: 2400, test: 200}
model:
  input: {channels: 1, height: 16, width: 16}
  layers:
    - {type: conv, features: 32, size: 3, padding: 1}
    - {type: relu}
    - {type: maxpool, window: 2, stride: 2}
    - {type: conv, features: 64, size: 3, padding: 1}
    - {type: relu}
    - {type: maxpool, window: 2, stride: 2}
    - {type: flatten}
    - {type: dense, neurons: 64}
    - {type: relu}
    - {type: dense, neurons: 2}
optimizer: {type: sgd, lr: 0.05, momentum: 0.9}
schedule: {type: cosine}
training: {epochs: 3, batch_size: 32, shards: 4, seed: 1}
EOF
start=$SECONDS
"$ptrain" train --config "$config" --threads 1 --output "$tmp/reference" --quiet > /dev/null
say "uninterrupted reference run: $((SECONDS - start)) s"
reference=$tmp/reference/model.safetensors

export PTRAIN_CONFIG=$config PTRAIN_CHECKPOINT_EVERY=10
# Open MPI in containers: no cross-memory attach (ptrace is often forbidden).
export OMPI_MCA_btl_vader_single_copy_mechanism=none

run=""
started() {  # the job wrote its first checkpoint (sets run), or it ended
    run=$(compgen -G "$work/runs/*-$job" | head -n 1) || true
    if [ -n "$run" ] && has_checkpoint "$run"; then return 0; fi
    ended "$job"
}
pending() { [ "$(field "$job" JobState)" = PENDING ]; }

check_script() {  # check_script NAME BINARY SBATCH-OPTIONS... -- SCRIPT-ARGUMENTS...
    local name=$1 binary=$2
    shift 2
    local options=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do options+=("$1"); shift; done
    if [ $# -gt 0 ]; then shift; fi
    work=$tmp/$name
    mkdir -p "$work"
    job=$(PTRAIN=$binary sbatch --parsable --chdir="$work" "${options[@]}" "$repo/configs/slurm/$name.sbatch" "$@")
    job=${job%%;*}
    local log=$work/ptrain-$job.out
    wait_for 60 "job $job to write its first checkpoint" started || die "$name: no checkpoint appeared"
    ended "$job" && die "$name: job $job ended before it could be signalled; see $log"
    scancel --signal=USR1 --batch "$job"
    wait_for 60 "job $job to stop" ended "$job" || die "$name: job $job did not stop on SIGUSR1"
    [ "$(field "$job" ExitCode)" = 3:0 ] || die "$name: exit code $(field "$job" ExitCode), expected 3:0; see $log"
    grep -q 'stopped by signal 10 after global step' "$log" || die "$name: no 'stopped by signal' line in $log"
    local stopped
    stopped=$(sed -n 's/.*stopped by signal 10 after global step \([0-9]*\);.*/\1/p' "$log" | tail -n 1)
    [ -d "$run/checkpoints/$(printf 'step-%09d' "$stopped")" ] || die "$name: no checkpoint of step $stopped in $run"
    [ ! -e "$run/model.safetensors" ] || die "$name: final weights written by a stopped run"

    scontrol requeue "$job"
    wait_for 30 "job $job to be pending" pending || die "$name: requeue failed"
    # A requeued job waits (BeginTime) before it may start again; `scontrol release` does not lift
    # that in Slurm 22.05, a new start time does.
    scontrol update JobId="$job" StartTime=now
    wait_for 120 "requeued job $job to end" ended "$job" || die "$name: requeued job did not end"
    [ "$(field "$job" JobState)" = COMPLETED ] || die "$name: requeued job $(field "$job" JobState), exit $(field "$job" ExitCode); see $log"
    grep -q "\"resumed_at_step\":$stopped," "$run/metrics.jsonl" || die "$name: the requeued job did not resume at step $stopped"
    cmp -s "$reference" "$run/model.safetensors" || die "$name: final weights differ from the uninterrupted run"
    if grep -q -- ' -0\.0 s' "$log"; then say "note: $name: an epoch line reports '-0.0 s' after resuming"; fi
    say "ok: $name (job $job stopped at step $stopped, resumed, same weights)"
}

half=$((cpus / 2))
check_script train-1node "$ptrain" --cpus-per-task="$cpus"
# The MPI scripts' default --shards suits their node counts; the X/O job's 4 shards suit 2 ranks.
check_script train-2nodes "$ptrain_mpi" --nodes=1 --ntasks-per-node=2 --cpus-per-task="$half" -- --shards 4
check_script train-per-socket "$ptrain_mpi" --nodes=1 --ntasks-per-node=2 --ntasks-per-socket=2 \
    --cpus-per-task="$half" -- --shards 4
say "all three scripts stopped, requeued and resumed with bit-identical weights"
