#!/usr/bin/env bash
# Run the workflow through a real single-node SLURM, the way a user does:
#   snakemake --profile slurm ...        (typed at the repository root)
#
# Usage (needs root or passwordless sudo; Debian/Ubuntu):
#   bash tests/slurm/run_slurm_test.sh [--keep] [TARGET ...]  # default: preprocess_all
#   bash tests/slurm/run_slurm_test.sh --setup-only           # only bring SLURM up
#
#  1. Installs the Debian packages slurmctld slurmd slurm-client munge if
#     missing; writes /etc/slurm/slurm.conf + gres.conf (one node "localhost",
#     partitions cpu (default) and gpu, one count-only GPU, no accounting);
#     starts munged, slurmctld, slurmd unless they already run, and waits for
#     the node to be idle. Daemons this script starts are stopped on exit,
#     and the configuration it wrote goes with the controller it started.
#  2. Copies the repository (its git files, without results/) to a scratch
#     folder, so the test neither reads nor touches ./results and does the
#     same work on every call; .venv is linked, not copied.
#  3. Run 1, at the copy's root: the demo's TARGETs (default preprocess_all:
#     demo cohort, prepare, preprocess) with
#       snakemake TARGET... --profile slurm --configfile config/demo.yaml
#     Run 2, same place: one healthy scan's skull strip again (--force) with
#     SynthStrip weights configured (random ones), so that skullstrip_healthy
#     requests gpu=1.
#  4. Checks slurmctld's own records of the jobs (`scontrol -d show job`, kept
#     an hour after a job ends, MinJobAge): both runs exit 0 and all their
#     jobs COMPLETED; a job asks for a GPU (TresPerJob) exactly when it is on
#     partition gpu, and is allocated what it asked (JOB_GRES); run 1 has CPU
#     jobs on partition cpu; run 2's skullstrip_healthy job asked for a GPU.
#     Grouped jobs (profile: group-components): run 1's per-scan rules go as
#     group jobs, and at least one sbatch submission ran the jobs of several
#     scans (counted in its SLURM log: the `localrule RULE:` entries and their
#     wildcards); run 2's skull strip is a group job of partition gpu.
# Logs: logs/slurm_test/ (snakemake output, job records, SLURM daemon logs).
# --keep leaves the scratch copy (results, .snakemake/slurm_logs) in place.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MARKER="# written by tumorfab tests/slurm/run_slurm_test.sh"
CONF_DIR=/etc/slurm
NODE=localhost
GPU_RULE=skullstrip_healthy

die() { echo "SLURM TEST FAILED: $*" >&2; exit 1; }
say() { echo "[slurm-test] $*" >&2; }

SETUP_ONLY=0
KEEP=0
TARGETS=()
for arg in "$@"; do
    case "$arg" in
        --setup-only) SETUP_ONLY=1 ;;
        --keep) KEEP=1 ;;
        -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
        -*) die "unknown option $arg (targets are rule names or files)" ;;
        *) TARGETS+=("$arg") ;;
    esac
done
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(preprocess_all)

if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "needs root (or sudo) to install and start SLURM"
    exec sudo -E bash "$0" "$@"
fi

T_START=$(date +%s)
LOGDIR="$REPO/logs/slurm_test"
mkdir -p "$LOGDIR"

# --- 1. packages -------------------------------------------------------------
missing=()
for bin in slurmctld slurmd sbatch munged; do
    command -v "$bin" >/dev/null || missing+=("$bin")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing slurmctld slurmd slurm-client munge (missing: ${missing[*]})"
    # No init system here: keep the packages' postinst from starting daemons.
    own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        own_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >"$LOGDIR/apt.log" 2>&1 \
        || { tail -20 "$LOGDIR/apt.log" >&2; die "apt-get install failed"; }
    if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

# --- 2. configuration ----------------------------------------------------------
NCPU=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
CTLD_HOST=$(hostname -s 2>/dev/null || cut -d. -f1 /proc/sys/kernel/hostname)

new_conf=$(cat <<EOF
$MARKER
ClusterName=tumorfab
SlurmctldHost=${CTLD_HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
ReturnToService=2
# Keep finished jobs' records for an hour: the plugin reads job states from
# squeue (there is no slurmdbd, so no sacct) and this test reads the records
# of all its jobs with scontrol at the end of each run.
MinJobAge=3600
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$MEM_MB Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
EOF
)
# A count-only GPU: slurmd needs a device file for it, /dev/null will do.
new_gres=$(printf '%s\nAutoDetect=off\nNodeName=%s Name=gpu Count=1 File=/dev/null\n' "$MARKER" "$NODE")

if [ -e "$CONF_DIR/slurm.conf" ] && ! grep -qxF "$MARKER" "$CONF_DIR/slurm.conf"; then
    die "$CONF_DIR/slurm.conf exists and was not written by this script; not touching it"
fi
conf_changed=0
if [ "$(cat "$CONF_DIR/slurm.conf" 2>/dev/null)" != "$new_conf" ] ||
   [ "$(cat "$CONF_DIR/gres.conf" 2>/dev/null)" != "$new_gres" ]; then
    mkdir -p "$CONF_DIR"
    printf '%s\n' "$new_conf" > "$CONF_DIR/slurm.conf"
    printf '%s\n' "$new_gres" > "$CONF_DIR/gres.conf"
    conf_changed=1
fi
mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm

# --- 3. daemons ----------------------------------------------------------------
STARTED=()   # pidfiles of the daemons this script started

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_daemon() {   # stop_daemon PIDFILE: TERM the pid in it, wait until gone
    local pidfile=$1 pid i
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    echo "[slurm-test] $pidfile: pid $pid did not stop on TERM, killing" >&2
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    # keep the daemon logs of this run next to the test's own logs
    cp -f /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log "$LOGDIR/" 2>/dev/null || true
    if [ "$SETUP_ONLY" = 0 ]; then
        local i
        for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
            stop_daemon "${STARTED[$i]}"
        done
        # With the controller it started gone, take its configuration away
        # too: a client configuration naming a dead controller makes every
        # `scontrol` wait ~9 s, and Snakemake's SLURM executor plugin runs
        # `scontrol show config` each time Snakemake starts, on any executor.
        if [[ " ${STARTED[*]} " == *" ${CTLD_PID:-} "* ]]; then
            for conf in "$CONF_DIR/slurm.conf" "$CONF_DIR/gres.conf"; do
                grep -qxF "$MARKER" "$conf" 2>/dev/null && rm -f "$conf"
            done
        fi
    fi
    if [ -n "${SCRATCH:-}" ]; then
        if [ "$KEEP" = 1 ]; then say "scratch copy kept: $SCRATCH/repo"; else rm -rf "$SCRATCH"; fi
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

MUNGE_PID=/run/munge/munged.pid
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid

if [ "$conf_changed" = 1 ]; then
    # daemons left running with another configuration: restart them
    stop_daemon "$SLURMD_PID"
    stop_daemon "$CTLD_PID"
fi

mkdir -p /run/munge && chown munge:munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 600 /etc/munge/munge.key
fi
# A second munged exits 1, so only start one when none answers.
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    STARTED+=("$MUNGE_PID")
    for i in $(seq 1 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    munge -n | unmunge >/dev/null || die "munged does not answer"
fi

if ! pid_alive "$CTLD_PID"; then
    # -c: start from a clean state (no jobs or node states of earlier runs)
    /usr/sbin/slurmctld -c
    STARTED+=("$CTLD_PID")
fi
for i in $(seq 1 50); do
    scontrol ping 2>/dev/null | grep -q UP && break
    sleep 0.2
done
scontrol ping | grep -q UP || { tail -20 /var/log/slurm/slurmctld.log >&2; die "slurmctld is not up"; }

if ! pid_alive "$SLURMD_PID"; then
    /usr/sbin/slurmd -N "$NODE"
    STARTED+=("$SLURMD_PID")
fi

state=""
for i in $(seq 1 120); do
    state=$(sinfo -h -n "$NODE" -p cpu -o %T 2>/dev/null | head -1)
    case "$state" in idle|mixed|allocated) break ;; esac
    # a node drained by an earlier run: give it back
    case "$state" in drain*|down*) scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;; esac
    sleep 0.5
done
case "$state" in
    idle|mixed|allocated) ;;
    *) scontrol show node "$NODE" >&2 || true
       tail -20 /var/log/slurm/slurmd.log >&2 || true
       die "node $NODE is '$state', not idle, after 60 s" ;;
esac
say "SLURM is up: $(sinfo -h -o '%P %a %D %T %G' | tr '\n' ';') ($(( $(date +%s) - T_START )) s)"

if [ "$SETUP_ONLY" = 1 ]; then
    say "--setup-only: leaving the daemons running"
    exit 0
fi

# --- 4. workflow runs ------------------------------------------------------------
cd "$REPO"
[ -x "$REPO/.venv/bin/snakemake" ] || die "$REPO/.venv/bin/snakemake not found (create the environment first: make env)"
[ -e slurm/config.yaml ] || die "no profile 'slurm' at the repo root (slurm -> profiles/slurm)"

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/tumorfab-slurm-test.XXXXXX")
WORK="$SCRATCH/repo"
mkdir -p "$WORK"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # tracked + untracked-but-not-ignored files, as a checkout would have them
    git ls-files -z --cached --others --exclude-standard \
        | tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -C "$WORK" -xf -
else
    tar --exclude=./.venv --exclude=./results --exclude=./logs --exclude=./.snakemake \
        --exclude=./.git -cf - . | tar -C "$WORK" -xf -
fi
ln -s "$REPO/.venv" "$WORK/.venv"
[ -e "$WORK/slurm/config.yaml" ] || die "the profile link 'slurm' did not make it into the copy"
say "working copy: $WORK"
SNAKEMAKE="$WORK/.venv/bin/snakemake"

# run_snakemake NAME DIR ARGS...: run snakemake in DIR, log to $LOGDIR/NAME.log,
# print the SLURM run ID (the job name the plugin gives all jobs of the run)
run_snakemake() {
    local name=$1 dir=$2 rc
    shift 2
    say "$name: (cd $dir && snakemake $*)"
    set +e
    (cd "$dir" && "$SNAKEMAKE" "$@") > "$LOGDIR/$name.log" 2>&1
    rc=$?
    set -e
    if [ "$rc" -ne 0 ]; then
        tail -40 "$LOGDIR/$name.log" >&2
        die "$name: snakemake exited with $rc (full log: $LOGDIR/$name.log)"
    fi
    grep -oE 'SLURM run ID: [0-9a-zA-Z_-]+' "$LOGDIR/$name.log" | head -1 | awk '{print $4}'
}

# check_jobs NAME RUN_ID GPU_RULE MIN_SCANS: list the run's jobs from
# slurmctld's records and check them (see the header; GPU_RULE "-" = no GPU
# job required; MIN_SCANS: a group job must have run the jobs of at least that
# many scans, 0 = no group check). The group jobs' SLURM logs are copied to
# $LOGDIR/NAME.slurm-JOBID.log.
check_jobs() {
    local name=$1 run_id=$2 gpu_rule=$3 min_scans=$4
    scontrol -d -o show job > "$LOGDIR/$name.jobs.txt" 2>&1 || true
    "$REPO/.venv/bin/python" - "$LOGDIR/$name.jobs.txt" "$run_id" "$gpu_rule" \
        "$LOGDIR/$name.log" "$min_scans" <<'PY'
import re, shutil, sys
from pathlib import Path
path, run_id, gpu_rule, snakemake_log, min_scans = sys.argv[1:]
min_scans = int(min_scans)
# SLURM job id -> its log, from the plugin's "submitted with SLURM jobid N (log: PATH)"
slurm_logs = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: (\S+?)\)", open(snakemake_log).read()))

def group_scans(jobid):
    """(rule, wildcards) of each job a group job ran, from its SLURM log:
    the snakemake run inside the allocation names each job `localrule RULE:`."""
    log = slurm_logs.get(jobid)
    if not log or "/group_" not in log or not Path(log).exists():
        return None
    shutil.copyfile(log, Path(snakemake_log).with_suffix(f".slurm-{jobid}.log"))
    ran, rule = set(), None
    for line in open(log, errors="replace"):
        if m := re.match(r"localrule (\w+):", line):
            rule = m.group(1)
        elif rule and (m := re.match(r"\s+wildcards: (.*)", line)):
            ran.add((rule, m.group(1).strip()))
            rule = None
    return ran

def field(line, key):
    m = re.search(r"(?:^|\s)" + re.escape(key) + r"=(\S*)", line)
    return m.group(1) if m else ""

def gpus(spec):  # "gres:gpu:1" / "gpu:1" / "gres/gpu=2" -> 1 / 1 / 2; else 0
    m = re.search(r"gpu(?::[^:,=\s]+)?[:=](\d+)", spec)
    return int(m.group(1)) if m else 0

jobs = []
for line in open(path):
    if field(line, "JobName") != run_id:
        continue
    jobs.append(dict(
        id=field(line, "JobId"), rule=field(line, "Comment"),
        part=field(line, "Partition"), state=field(line, "JobState"),
        # the submission's request (sbatch --gpus=1 -> TresPerJob=gres:gpu:1)
        req=field(line, "TresPerJob") or "-",
        asked=gpus(field(line, "TresPerJob")) + gpus(field(line, "TresPerNode")),
        # what SLURM allocated (JOB_GRES=gpu:1 with `scontrol -d`)
        got=gpus(field(line, "JOB_GRES")),
        cpus=field(line, "NumCPUs"), limit=field(line, "TimeLimit"),
        scans=group_scans(field(line, "JobId")),
    ))
if not jobs:
    sys.exit(f"no SLURM job named {run_id} in `scontrol show job`")
for j in jobs:
    ran = "" if j["scans"] is None else (
        f" ran {len(j['scans'])} jobs of {len({w for _, w in j['scans']})} scans")
    print(f"  job {j['id']:>5} {j['state']:<10} partition={j['part']:<4} "
          f"TresPerJob={j['req']:<13} allocated_gpus={j['got']} cpus={j['cpus']} "
          f"time_limit={j['limit']} {j['rule']}{ran}")
errors = []
for j in jobs:
    what = f"job {j['id']} ({j['rule']})"
    if j["state"] != "COMPLETED":
        errors.append(f"{what} is {j['state']}")
    if bool(j["asked"]) != (j["part"] == "gpu"):
        errors.append(f"{what}: {j['asked']} GPUs requested, partition {j['part']}")
    if j["asked"] != j["got"]:
        errors.append(f"{what}: {j['asked']} GPUs requested, {j['got']} allocated")
if gpu_rule == "-":
    if not any(not j["asked"] and j["part"] == "cpu" for j in jobs):
        errors.append("no CPU job (no GPU request, partition cpu) in this run")
else:
    # alone: rule_RULE[_wildcards_...]; in a group job: rule_GROUP_RULE1_RULE2...
    mine = [j for j in jobs if re.search(r"(^rule|_)" + gpu_rule + r"(_|$)", j["rule"])]
    if not mine:
        errors.append(f"no job of rule {gpu_rule} in this run")
    for j in mine:
        if not (j["asked"] >= 1 and j["got"] >= 1 and j["part"] == "gpu"):
            errors.append(f"{gpu_rule} job {j['id']} was not submitted with a "
                          "GPU request to partition gpu")
if min_scans:
    groups = [j for j in jobs if j["scans"] is not None]
    best = max((len({w for _, w in j["scans"]}) for j in groups), default=0)
    if best < min_scans:
        errors.append(f"no group job ran the jobs of {min_scans} scans or more "
                      f"({len(groups)} group jobs, at most {best} scans in one)")
    else:
        print(f"  {len(groups)} group jobs; one sbatch submission ran the jobs of up to {best} scans")
if errors:
    sys.exit("\n".join(errors))
print(f"  {len(jobs)} jobs, {sum(1 for j in jobs if j['asked'])} with a GPU request: OK")
PY
}

# Rules may ask for more threads than this small node has. The SLURM logs of
# successful jobs are kept: the group check reads them.
COMMON=(--profile slurm --max-threads "$NCPU" --slurm-keep-successful-logs
        --configfile config/demo.yaml)

T1=$(date +%s)
RUN1=$(run_snakemake run1 "$WORK" "${TARGETS[@]}" "${COMMON[@]}")
[ -n "$RUN1" ] || die "run1: no 'SLURM run ID' in the snakemake log (was the slurm executor used?)"
say "run1: done in $(( $(date +%s) - T1 )) s; SLURM jobs named $RUN1:"
check_jobs run1 "$RUN1" - 2 >&2 || die "run1: job check failed (records: $LOGDIR/run1.jobs.txt)"

# --- run 2: one skull strip with SynthStrip weights: a job that requests a GPU
# a healthy subject of the demo, from the job list of a dry run
subject=$(cd "$WORK" && "$SNAKEMAKE" -n --forceall preprocess_all --configfile config/demo.yaml 2>/dev/null \
          | grep -oE 'results/preprocess/stripped/[^/ ,]+/t1n\.nii\.gz' | sort -u | head -1 | cut -d/ -f4)
[ -n "$subject" ] || die "no skull-strip output (results/preprocess/stripped/*/t1n.nii.gz) in the demo's job list"
WEIGHTS="$SCRATCH/synthstrip_random.pt"
"$REPO/.venv/bin/python" "$REPO/tests/helpers/write_random_synthstrip_weights.py" "$WEIGHTS" \
    > "$LOGDIR/weights.log" 2>&1 || { cat "$LOGDIR/weights.log" >&2; die "could not write SynthStrip weights"; }
# Random weights strip no real brain: the plausible-volume stop is opened wide.
printf 'skullstrip:\n  synthstrip_weights: %s\n  brain_volume_ml: [0.001, 1000000]\n' "$WEIGHTS" \
    > "$SCRATCH/synthstrip.yaml"

T2=$(date +%s)
RUN2=$(run_snakemake run2 "$WORK" "results/preprocess/stripped/$subject/t1n.nii.gz" --force \
       "${COMMON[@]}" "$SCRATCH/synthstrip.yaml")
[ -n "$RUN2" ] || die "run2: no 'SLURM run ID' in the snakemake log"
say "run2: done in $(( $(date +%s) - T2 )) s; SLURM jobs named $RUN2:"
check_jobs run2 "$RUN2" "$GPU_RULE" 0 >&2 || die "run2: job check failed (records: $LOGDIR/run2.jobs.txt)"

say "PASSED in $(( $(date +%s) - T_START )) s (logs: $LOGDIR)"
