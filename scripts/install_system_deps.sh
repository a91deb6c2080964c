#!/usr/bin/env bash
# Debian packages the test suite uses: headless Chromium (report rendering test), and SLURM
# (slurm-wlm) with munge for the single-node cluster of tests/test_slurm.py
# (scripts/slurm_cluster.sh).
# Installs only what is missing; without root it says what to install and carries on
# (the tests that need a package then skip with a reason).
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
for exe in slurmctld slurmd sbatch; do
    command -v "$exe" >/dev/null 2>&1 || { need+=(slurm-wlm); break; }
done
command -v munged >/dev/null 2>&1 || need+=(munge)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: not installing ${need[*]} (needs root and apt-get); tests that use them will skip" >&2
    exit 0
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
