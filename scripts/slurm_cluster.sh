#!/usr/bin/env bash
# A single-node SLURM cluster on the loopback interface, for tests and for trying
# dnnrsa's SLURM instructions on one machine: munged, slurmctld and one slurmd.
#
#   sudo scripts/slurm_cluster.sh start    # write the configuration, start the daemons, wait
#   sudo scripts/slurm_cluster.sh status   # sinfo of the running cluster
#   sudo scripts/slurm_cluster.sh stop     # stop the daemons started by 'start'
#   scripts/slurm_cluster.sh env           # print 'export SLURM_CONF=...' for the client commands
#
# Needs root and Debian's slurm-wlm and munge packages (scripts/install_system_deps.sh installs
# them). Nothing is written outside DNNRSA_SLURM_DIR except /run/munge (munged's socket) when no
# munged is running yet. Every daemon runs in the background without systemd or cgroups. 'start'
# and 'stop' are idempotent: starting a running cluster only waits for it to be idle.
#
# Settings (environment variables):
#   DNNRSA_SLURM_DIR         state, spool, logs and slurm.conf (default /tmp/dnnrsa-slurm)
#   DNNRSA_SLURM_CPUS        CPUs of the node (default: nproc)
#   DNNRSA_SLURM_MEM_MB      RealMemory of the node (default: min(16000, total - 1 GB))
#   DNNRSA_SLURM_PORTS       slurmctld and slurmd ports (default "6817 6818")
#   DNNRSA_SLURM_TIMEOUT_S   how long 'start' waits for the node to be idle (default 60)
#
# The client commands (sbatch, squeue, sinfo, scontrol) read the configuration from $SLURM_CONF:
#   eval "$(scripts/slurm_cluster.sh env)"
# Finished jobs are logged, with start and end times, to $DNNRSA_SLURM_DIR/jobcomp.log.
set -euo pipefail

DIR=${DNNRSA_SLURM_DIR:-/tmp/dnnrsa-slurm}
CONF=$DIR/slurm.conf
TIMEOUT_S=${DNNRSA_SLURM_TIMEOUT_S:-60}
read -r CTLD_PORT SLURMD_PORT <<<"${DNNRSA_SLURM_PORTS:-6817 6818}"
NODE=localhost
MUNGE_SOCKET=/run/munge/munge.socket.2

log() { echo "slurm_cluster: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

pid_alive() { # pidfile
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

need_root_and_binaries() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (the daemons run as SlurmUser=root)"
    local missing=()
    for exe in munged munge unmunge slurmctld slurmd sinfo scontrol; do
        command -v "$exe" >/dev/null 2>&1 || missing+=("$exe")
    done
    [ ${#missing[@]} -eq 0 ] ||
        die "missing ${missing[*]}: apt-get install slurm-wlm munge (scripts/install_system_deps.sh)"
}

write_conf() {
    local cpus mem_mb total_mb ctl_host
    cpus=${DNNRSA_SLURM_CPUS:-$(nproc)}
    total_mb=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
    mem_mb=${DNNRSA_SLURM_MEM_MB:-$((total_mb - 1024 < 16000 ? total_mb - 1024 : 16000))}
    ctl_host=$(hostname -s)
    mkdir -p "$DIR/state" "$DIR/spool"
    cat >"$CONF.tmp" <<EOF
# single-node cluster on loopback, written by scripts/slurm_cluster.sh
ClusterName=dnnrsa
SlurmctldHost=${ctl_host}(127.0.0.1)
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${MUNGE_SOCKET}
StateSaveLocation=${DIR}/state
SlurmdSpoolDir=${DIR}/spool
SlurmctldPidFile=${DIR}/slurmctld.pid
SlurmdPidFile=${DIR}/slurmd.pid
SlurmctldLogFile=${DIR}/slurmctld.log
SlurmdLogFile=${DIR}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=${DIR}/jobcomp.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
MinJobAge=600
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=${NODE} NodeAddr=127.0.0.1 NodeHostname=${ctl_host} CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=debug Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    mv "$CONF.tmp" "$CONF"
}

munge_works() {
    command -v munge >/dev/null && munge -n -S "$MUNGE_SOCKET" 2>/dev/null |
        unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1
}

start_munge() {
    if munge_works; then
        return
    fi
    [ -s /etc/munge/munge.key ] || {
        log "creating /etc/munge/munge.key"
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        fi
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    }
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    log "starting munged"
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid || die "munged failed to start"
    cp /run/munge/munged.pid "$DIR/munged.pid"
    for _ in $(seq 50); do
        munge_works && return
        sleep 0.1
    done
    die "munged does not answer on $MUNGE_SOCKET"
}

node_state() {
    SLURM_CONF=$CONF sinfo -h -n "$NODE" -o '%T' 2>/dev/null | head -n1
}

start() {
    need_root_and_binaries
    mkdir -p "$DIR"
    if pid_alive "$DIR/slurmctld.pid" && pid_alive "$DIR/slurmd.pid"; then
        log "already running (configuration $CONF)"
    else
        stop_daemons quiet
        write_conf
        # job ids restart at 1 with a fresh controller: keep the completion log of one cluster
        [ -f "$DIR/jobcomp.log" ] && mv -f "$DIR/jobcomp.log" "$DIR/jobcomp.log.old"
        start_munge
        export SLURM_CONF=$CONF
        log "starting slurmctld and slurmd (configuration $CONF)"
        # -i: ignore saved state of an earlier cluster in the same folder
        slurmctld -i -f "$CONF" || die "slurmctld failed to start; see $DIR/slurmctld.log"
        slurmd -f "$CONF" -N "$NODE" || die "slurmd failed to start; see $DIR/slurmd.log"
    fi
    local state="" waited=0
    while [ "$waited" -lt $((TIMEOUT_S * 2)) ]; do
        state=$(node_state || true)
        case "$state" in
        idle | mixed | allocated) break ;;
        down* | drain* | *drain)
            SLURM_CONF=$CONF scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true
            ;;
        esac
        sleep 0.5
        waited=$((waited + 1))
    done
    case "$state" in
    idle | mixed | allocated) ;;
    *)
        tail -n 20 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 2>/dev/null || true
        die "node $NODE is '${state:-unreachable}' after ${TIMEOUT_S} s"
        ;;
    esac
    log "node $NODE is $state"
    echo "export SLURM_CONF=$CONF"
}

stop_daemons() { # [quiet]
    local pidfile pid
    for daemon in slurmd slurmctld; do
        pidfile=$DIR/$daemon.pid
        if pid_alive "$pidfile"; then
            pid=$(cat "$pidfile")
            [ "${1:-}" = quiet ] || log "stopping $daemon ($pid)"
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    done
}

stop() {
    stop_daemons
    # a munged that was running before 'start' is left alone (it may serve others); the one
    # started by 'start' (pid recorded in $DIR/munged.pid) stops with the cluster
    if pid_alive "$DIR/munged.pid"; then
        log "stopping munged"
        kill -TERM "$(cat "$DIR/munged.pid")" 2>/dev/null || true
    fi
    rm -f "$DIR/munged.pid"
}

status() {
    if pid_alive "$DIR/slurmctld.pid"; then
        SLURM_CONF=$CONF sinfo
    else
        log "not running"
        return 3
    fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
env) echo "export SLURM_CONF=$CONF" ;;
*)
    echo "usage: $0 {start|stop|status|env}" >&2
    exit 64
    ;;
esac
