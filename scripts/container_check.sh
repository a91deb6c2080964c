#!/usr/bin/env bash
# Build the Dockerfile for real and run the image's self-test, without any image registry
# (`make container-check`, docs/containers.md):
#
#   1. install podman and mmdebstrap from Debian (apt-get), if they are missing;
#   2. bootstrap a minimal Debian 12 (bookworm) root file system from the Debian archive and
#      import it as the local base image localhost/dnnrsa-base:bookworm;
#   3. build the Dockerfile on that base (--build-arg BASE_IMAGE=...), which downloads the
#      locked environment (torch with its CUDA wheels, several GB) from PyPI and runs
#      scripts/container_selftest.sh once during the build;
#   4. run the built image: `dnnrsa --version` (its entry point) and the self-test again;
#   5. print the image size and the build time.
#
# Needs root on a Debian (or Debian-based) machine that can reach deb.debian.org and PyPI.
# Everything it writes (root file system, container storage) goes under CHECK_DIR, outside
# the repository. Settings, all optional (environment variables):
#
#   CHECK_DIR            work folder (default /tmp/dnnrsa-container-check)
#   CHECK_IMAGE          tag of the built image (default localhost/dnnrsa:check)
#   CHECK_MIRROR         Debian mirror (default http://deb.debian.org/debian)
#   CHECK_STORAGE_DRIVER overlay | fuse-overlayfs | vfs | auto (default auto: the first that
#                        works here). vfs copies every layer whole: with this image (~10 GB
#                        environment, ~8 layers above it) it needs ~80 GB of disk.
#   CHECK_ISOLATION      oci | chroot | auto (default auto: oci when a container starts here
#                        with crun or runc, else chroot, run through buildah)
#   CHECK_RUNTIME        crun | runc | auto (default auto: the first that starts a container)
#   CHECK_NETWORK        network of the build and run containers (default host)
#   CHECK_EXTRA_CA       auto | yes | no (default auto): copy the host's local certificate
#                        authorities (/usr/local/share/ca-certificates/*.crt) into the base
#                        image, for networks whose HTTPS goes through an inspecting proxy
#   CHECK_REBOOTSTRAP=1  bootstrap the base again even if it is already imported
#   CHECK_CLEAN=1        remove CHECK_DIR (storage, base, image) at the end
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
CHECK_DIR="${CHECK_DIR:-/tmp/dnnrsa-container-check}"
CHECK_IMAGE="${CHECK_IMAGE:-localhost/dnnrsa:check}"
CHECK_MIRROR="${CHECK_MIRROR:-http://deb.debian.org/debian}"
CHECK_STORAGE_DRIVER="${CHECK_STORAGE_DRIVER:-auto}"
CHECK_ISOLATION="${CHECK_ISOLATION:-auto}"
CHECK_RUNTIME="${CHECK_RUNTIME:-auto}"
CHECK_NETWORK="${CHECK_NETWORK:-host}"
CHECK_EXTRA_CA="${CHECK_EXTRA_CA:-auto}"
BASE_IMAGE="localhost/dnnrsa-base:bookworm"
ROOTFS_TAR="$CHECK_DIR/bookworm-rootfs.tar"

say() { printf '== container-check: %s\n' "$*"; }
die() { printf '== container-check: FAILED: %s\n' "$*" >&2; exit 1; }
human() { numfmt --to=iec-i --suffix=B "$1" 2>/dev/null || echo "$1 bytes"; }
duration() { printf '%dm %02ds' $(($1 / 60)) $(($1 % 60)); }

[ "$(id -u)" -eq 0 ] || die "run as root (podman's storage, mmdebstrap and chroot need it)"
command -v apt-get >/dev/null || die "needs a Debian-based machine (apt-get)"
case "$CHECK_DIR" in "$REPO"|"$REPO"/*) die "CHECK_DIR must be outside the repository" ;; esac
mkdir -p "$CHECK_DIR/tmp"
export TMPDIR="$CHECK_DIR/tmp"   # podman's and buildah's temporary copies of the build context
say "work folder $CHECK_DIR ($(df -h --output=avail "$CHECK_DIR" | tail -1 | tr -d ' ') free there)"

# --- 1. tools from Debian ------------------------------------------------------------------
need=()
for cmd_pkg in podman:podman buildah:buildah mmdebstrap:mmdebstrap fuse-overlayfs:fuse-overlayfs \
               newuidmap:uidmap crun:crun runc:runc conmon:conmon numfmt:coreutils; do
    command -v "${cmd_pkg%%:*}" >/dev/null || need+=("${cmd_pkg#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
    say "installing from Debian: ${need[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${need[@]}" containernetworking-plugins iptables slirp4netns
fi
say "$(podman --version), $(buildah --version | cut -d' ' -f1-3), mmdebstrap $(mmdebstrap --version | awk '{print $2}')"

# Every podman/buildah call uses this storage, under CHECK_DIR, with settings that need no
# systemd, no registry and no journald.
STORE_OPTS=()
podman_() {
    podman --root "$CHECK_DIR/storage" --runroot "$CHECK_DIR/run" "${STORE_OPTS[@]}" \
        --cgroup-manager cgroupfs --events-backend file "$@"
}
buildah_() {
    buildah --root "$CHECK_DIR/storage" --runroot "$CHECK_DIR/run" "${STORE_OPTS[@]}" "$@"
}
set_driver() {
    case "$1" in
        overlay)        STORE_OPTS=(--storage-driver overlay) ;;
        fuse-overlayfs) STORE_OPTS=(--storage-driver overlay --storage-opt overlay.mount_program=/usr/bin/fuse-overlayfs) ;;
        vfs)            STORE_OPTS=(--storage-driver vfs) ;;
        *) die "unknown CHECK_STORAGE_DRIVER $1" ;;
    esac
}
# The storage remembers the driver it was created with; reuse it across runs.
if [ -f "$CHECK_DIR/storage-driver" ] && [ "$CHECK_STORAGE_DRIVER" = auto ]; then
    CHECK_STORAGE_DRIVER="$(cat "$CHECK_DIR/storage-driver")"
fi

# --- 2. a Debian 12 base from the archive ----------------------------------------------------
t0=$(date +%s)
if [ "${CHECK_REBOOTSTRAP:-0}" = 1 ] || [ ! -s "$ROOTFS_TAR" ]; then
    hooks=()
    cas=(/usr/local/share/ca-certificates/*.crt)
    if [ "$CHECK_EXTRA_CA" = yes ] || { [ "$CHECK_EXTRA_CA" = auto ] && [ -e "${cas[0]}" ]; }; then
        say "adding the host's local certificate authorities to the base: ${cas[*]##*/}"
        hooks+=(--customize-hook='mkdir -p "$1/usr/local/share/ca-certificates"')
        for ca in "${cas[@]}"; do
            hooks+=(--customize-hook="cp '$ca' \"\$1/usr/local/share/ca-certificates/\"")
        done
        # pip then verifies against the system bundle that ca-certificates builds from them
        hooks+=(--customize-hook='printf "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n" > "$1/etc/pip.conf"')
    fi
    say "bootstrapping Debian 12 (bookworm, minbase) from $CHECK_MIRROR"
    rm -f "$ROOTFS_TAR.part"
    # Like debian:12-slim: minbase, no documentation, man pages or translations.
    mmdebstrap --mode=root --variant=minbase --format=tar \
        --aptopt='Acquire::Languages "none"' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        "${hooks[@]}" \
        bookworm "$ROOTFS_TAR.part" \
        "deb $CHECK_MIRROR bookworm main" \
        "deb $CHECK_MIRROR bookworm-updates main" \
        "deb ${CHECK_MIRROR%/debian}/debian-security bookworm-security main"
    mv "$ROOTFS_TAR.part" "$ROOTFS_TAR"
    rm -f "$CHECK_DIR/base-imported"
fi
say "root file system: $(human "$(stat -c %s "$ROOTFS_TAR")") tar"

import_base() {
    podman_ import --change 'CMD ["bash"]' "$ROOTFS_TAR" "$BASE_IMAGE" >/dev/null
}
if [ "$CHECK_STORAGE_DRIVER" = auto ]; then
    for d in overlay fuse-overlayfs vfs; do
        set_driver "$d"
        rm -rf "$CHECK_DIR/storage" "$CHECK_DIR/run"
        if import_base 2>"$CHECK_DIR/import.err" && podman_ create --name dnnrsa-probe "$BASE_IMAGE" true >/dev/null 2>>"$CHECK_DIR/import.err" \
            && podman_ mount dnnrsa-probe >/dev/null 2>>"$CHECK_DIR/import.err"; then
            podman_ rm -f dnnrsa-probe >/dev/null
            CHECK_STORAGE_DRIVER="$d"
            break
        fi
        say "storage driver $d does not work here: $(tail -1 "$CHECK_DIR/import.err")"
        podman_ rm -f dnnrsa-probe >/dev/null 2>&1 || true
        CHECK_STORAGE_DRIVER=auto
    done
    [ "$CHECK_STORAGE_DRIVER" != auto ] || die "no storage driver works (see $CHECK_DIR/import.err)"
    echo "$CHECK_STORAGE_DRIVER" > "$CHECK_DIR/storage-driver"
    touch "$CHECK_DIR/base-imported"
else
    set_driver "$CHECK_STORAGE_DRIVER"
    echo "$CHECK_STORAGE_DRIVER" > "$CHECK_DIR/storage-driver"
    if [ ! -e "$CHECK_DIR/base-imported" ] || ! podman_ image exists "$BASE_IMAGE"; then
        import_base
        touch "$CHECK_DIR/base-imported"
    fi
fi
say "base image $BASE_IMAGE imported, storage driver $CHECK_STORAGE_DRIVER ($(( $(date +%s) - t0 )) s)"

# --- can a container start here? ------------------------------------------------------------
# Two things stop OCI containers on some machines, each with a workaround:
#  - podman gives a root container high RLIMIT_NOFILE and RLIMIT_NPROC limits, which need
#    CAP_SYS_RESOURCE when the host's hard limits are lower ("setrlimit `RLIMIT_NOFILE`:
#    Operation not permitted"): ask for the host's open-files limit and 32768 processes;
#  - crun refuses cgroup v1 hosts that also mount cgroup v2 with controllers ("cgroups in
#    hybrid mode not supported"); runc accepts them.
RUN_OPTS=(--network "$CHECK_NETWORK")
hard_nofile=$(ulimit -Hn); hard_nproc=$(ulimit -Hu)
[ "$hard_nofile" = unlimited ] || [ "$hard_nofile" -ge 1048576 ] || RUN_OPTS+=(--ulimit "nofile=$hard_nofile:$hard_nofile")
{ [ "$hard_nproc" != unlimited ] && [ "$hard_nproc" -lt 32768 ]; } || hard_nproc=32768
RUN_OPTS+=(--ulimit "nproc=$hard_nproc:$hard_nproc")
if [ "$CHECK_ISOLATION" != chroot ]; then
    runtimes=(crun runc)
    [ "$CHECK_RUNTIME" = auto ] || runtimes=("$CHECK_RUNTIME")
    : > "$CHECK_DIR/run.err"
    for rt in "${runtimes[@]}"; do
        if podman_ --runtime "$rt" run --rm "${RUN_OPTS[@]}" "$BASE_IMAGE" true 2>>"$CHECK_DIR/run.err"; then
            CHECK_RUNTIME="$rt"
            CHECK_ISOLATION=oci
            break
        fi
        say "a container does not start with $rt: $(tail -1 "$CHECK_DIR/run.err")"
    done
    if [ "$CHECK_ISOLATION" != oci ]; then
        [ "$CHECK_ISOLATION" = auto ] || die "no OCI runtime starts a container here (see $CHECK_DIR/run.err)"
        say "no OCI runtime starts a container here; using chroot isolation (buildah)"
        CHECK_ISOLATION=chroot
    fi
fi
if [ "$CHECK_ISOLATION" = oci ]; then
    STORE_OPTS+=(--runtime "$CHECK_RUNTIME")
    say "isolation: oci, runtime $CHECK_RUNTIME, options: ${RUN_OPTS[*]}"
else
    say "isolation: chroot, network: $CHECK_NETWORK"
fi

# --- 3. build --------------------------------------------------------------------------------
say "building $CHECK_IMAGE from $REPO/Dockerfile (log: $CHECK_DIR/build.log)"
t0=$(date +%s)
build_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --pull=never -f "$REPO/Dockerfile" -t "$CHECK_IMAGE")
set +e
if [ "$CHECK_ISOLATION" = oci ]; then
    podman_ build "${RUN_OPTS[@]}" "${build_args[@]}" "$REPO" 2>&1 | tee "$CHECK_DIR/build.log"
else
    buildah_ bud --layers --isolation chroot --network "$CHECK_NETWORK" "${build_args[@]}" "$REPO" 2>&1 | tee "$CHECK_DIR/build.log"
fi
rc=${PIPESTATUS[0]}
set -e
build_s=$(( $(date +%s) - t0 ))
[ "$rc" -eq 0 ] || die "the build failed after $(duration "$build_s") (exit $rc); log: $CHECK_DIR/build.log"
say "build passed in $(duration "$build_s")"

# --- 4. run the image ----------------------------------------------------------------------
t0=$(date +%s)
if [ "$CHECK_ISOLATION" = oci ]; then
    say "podman run --rm $CHECK_IMAGE --version"
    podman_ run --rm "${RUN_OPTS[@]}" "$CHECK_IMAGE" --version
    say "podman run --rm --entrypoint bash $CHECK_IMAGE scripts/container_selftest.sh"
    podman_ run --rm "${RUN_OPTS[@]}" --entrypoint bash "$CHECK_IMAGE" scripts/container_selftest.sh
else
    # Without OCI containers, run the same commands in a buildah working container (chroot).
    ctr=$(buildah_ from --pull-never "$CHECK_IMAGE")
    trap 'buildah_ rm "$ctr" >/dev/null 2>&1 || true' EXIT
    say "buildah run $CHECK_IMAGE dnnrsa --version"
    buildah_ run --isolation chroot --network "$CHECK_NETWORK" "$ctr" -- dnnrsa --version
    say "buildah run $CHECK_IMAGE bash scripts/container_selftest.sh"
    buildah_ run --isolation chroot --network "$CHECK_NETWORK" "$ctr" -- bash scripts/container_selftest.sh
fi
selftest_s=$(( $(date +%s) - t0 ))

# --- 5. summary ------------------------------------------------------------------------------
size=$(podman_ image inspect --format '{{.Size}}' "$CHECK_IMAGE")
say "PASSED"
say "image $CHECK_IMAGE: $(human "$size") ($size bytes, uncompressed; base $(human "$(podman_ image inspect --format '{{.Size}}' "$BASE_IMAGE")"))"
say "build time $(duration "$build_s") (bootstrap excluded), self-test run $(duration "$selftest_s")"
say "storage: $(du -sh "$CHECK_DIR/storage" 2>/dev/null | cut -f1) under $CHECK_DIR/storage ($CHECK_STORAGE_DRIVER)"
podman_ image prune -f >/dev/null   # images of earlier builds, left untagged
if [ "${CHECK_CLEAN:-0}" = 1 ]; then
    podman_ rmi -af >/dev/null 2>&1 || true
    rm -rf "$CHECK_DIR"
    say "removed $CHECK_DIR"
else
    say "the image stays in $CHECK_DIR (CHECK_CLEAN=1 removes it); to run it again:"
    say "  podman --root $CHECK_DIR/storage --runroot $CHECK_DIR/run ${STORE_OPTS[*]} --cgroup-manager cgroupfs --events-backend file run --rm ${RUN_OPTS[*]} $CHECK_IMAGE --help"
fi
