#!/usr/bin/env bash
# Searchlight checks on a machine with an NVIDIA GPU, sized to finish in under 5 minutes.
#
# Run from the repository root:  bash benchmarks/gpu_check.sh [results_file]
# It installs what it needs into the active Python environment (CuPy for CUDA 13
# and the test tools) when they are missing, runs the GPU-marked searchlight tests,
# then the whole-brain benchmark on `cuda` (MNI 2 mm, radius 6 mm, 72 conditions,
# 29 models, Spearman) and the same on the CPU for reference, and writes a short
# results file (default: gpu_check_results.txt, or $OUT/gpu_check_results.txt).
set -u
cd "$(dirname "$0")/.."
RESULTS="${1:-${OUT:-.}/gpu_check_results.txt}"
PY="${PYTHON:-python}"
export PYTHONPATH="${PWD}${PYTHONPATH:+:$PYTHONPATH}"

log() { echo "$*" | tee -a "$RESULTS"; }
: > "$RESULTS"
log "# dnnrsa searchlight GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
log "## device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$RESULTS"

if ! "$PY" -c "import cupy" 2>/dev/null; then
    log "installing cupy-cuda13x"
    "$PY" -m pip install --quiet "cupy-cuda13x" >/dev/null 2>&1 || log "cupy install failed"
fi
"$PY" -c "import pytest, nilearn, nibabel, scipy" 2>/dev/null \
    || "$PY" -m pip install --quiet pytest nilearn nibabel scipy tqdm >/dev/null 2>&1
"$PY" -c "import dnnrsa.backend as b; print('gpu_available:', b.gpu_available())" 2>&1 \
    | tee -a "$RESULTS"

log "## GPU tests (pytest -m gpu tests/test_searchlight.py)"
timeout 150 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/test_searchlight.py 2>&1 \
    | tail -n 15 | tee -a "$RESULTS"

log "## benchmark on cuda (whole brain, 2 mm)"
timeout 120 "$PY" benchmarks/searchlight.py --device cuda --skip-rsatoolbox 2>&1 \
    | tail -n 8 | tee -a "$RESULTS"
log "## benchmark on cuda, Pearson"
timeout 60 "$PY" benchmarks/searchlight.py --device cuda --skip-rsatoolbox --comparator pearson 2>&1 \
    | grep -E "^dnnrsa" | tee -a "$RESULTS"
log "## benchmark on cpu (same machine, for reference)"
timeout 90 "$PY" benchmarks/searchlight.py --device cpu --skip-rsatoolbox 2>&1 \
    | grep -E "^(BLAS|dnnrsa)" | tee -a "$RESULTS"
log "## done"
