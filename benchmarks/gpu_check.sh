#!/usr/bin/env bash
# Study-scale GPU check on a machine with an NVIDIA GPU, sized to finish in under 9 minutes
# (its timeouts add up to 8 min 45 s; steps 1 and 2 alone to under 7 minutes, so that a
# rerun of them fits in a 15-minute device lease with the machine's start).
#
# Run from the repository root:  bash benchmarks/gpu_check.sh [results_file]
#
# 1. benchmarks/gpu_study.py (numpy, scipy, torch, CuPy, tqdm, threadpoolctl; no nibabel,
#    nilearn or network needed): whole-brain 2 mm searchlight with 116 models, TFCE of
#    one map with 5,000 permutations (batched on CuPy; a pilot first, the full count
#    when it fits), max-T over 116 maps with 5,000 permutations, feature extraction of
#    four networks on CUDA; each beside the same machine's CPU (subsets, scaled).
#    The TFCE's CPU reference (a mask of over 20,000 voxels) runs dnnrsa's flooding
#    compiled with numba: where numba does not import, that reference is skipped and
#    the row says so (the GPU figure stays). numba is not carried: its wheels for
#    Python 3.12 (numba 0.68.1, 3.8 MiB; llvmlite 0.50.0, 57 MiB) take nearly all the
#    64 MiB a device call may carry. Writes gpu_study.json next to the results file.
# 2. Only when nibabel and nilearn import: the GPU-marked searchlight tests and
#    benchmarks/searchlight.py on cuda and cpu (MNI 2 mm mask, 29 models); then the
#    GPU-marked GLM tests (tests/test_fastglm_gpu.py) and benchmarks/glm.py --device cuda
#    (dnnrsa's LSA and LSS fits of one simulated run at 3 mm on cuda beside the CPU).
#
# Results: a short text file (default: $OUT/gpu_check_results.txt, else
# ./gpu_check_results.txt). Nothing is installed from the network. Wheels found in
# .whl/ (or $WHEELS) are installed into /tmp/site first, for machines that lack a
# package; step 1 needs none on a machine with torch and CuPy. For step 2, prepare
# the wheels here (nibabel 5.4.2, 3.2 MiB, and nilearn 0.14.1, 11 MiB: with the
# tracked tree, about 2 MiB, well under the 64 MiB a device call may carry):
#
#   mkdir -p .git/info && echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 --platform any \
#       -d .whl nibabel nilearn
#   du -sh .whl    # must stay under 64 MiB with the rest of the tree
#
# (nilearn's other needs, jinja2, joblib, packaging, pandas, requests, scikit-learn
# and scipy, are on the device image; `unzip -p .whl/NAME-*.whl '*/METADATA' | grep
# ^Requires-Dist` lists them.) Then run it there with `.whl` carried:
#   bash benchmarks/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
RESULTS="${1:-${OUT:-.}/gpu_check_results.txt}"
RESULTS_DIR="$(dirname "$RESULTS")"
PY="${PYTHON:-python3}"
WHEELS="${WHEELS:-.whl}"
export PYTHONPATH="${PWD}${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

log() { echo "$*" | tee -a "$RESULTS"; }
mkdir -p "$RESULTS_DIR"
: > "$RESULTS"
log "# dnnrsa study-scale GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
log "## device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$RESULTS"

if compgen -G "$WHEELS/*.whl" >/dev/null; then
    if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$WHEELS"/*.whl; then
        export PYTHONPATH="${PYTHONPATH}:/tmp/site"
        log "installed carried wheels: $(ls "$WHEELS" | tr '\n' ' ')"
    else
        log "carried wheels could not be installed"
    fi
fi
"$PY" -c "import dnnrsa.backend as b; print('gpu_available:', b.gpu_available())" 2>&1 \
    | tee -a "$RESULTS"
# what imports here decides what runs: numba (the TFCE's CPU reference), nibabel and
# nilearn (step 2)
"$PY" - <<'PY' 2>&1 | tee -a "$RESULTS"
import importlib

for name in ("numpy", "scipy", "torch", "cupy", "numba", "nibabel", "nilearn", "pytest"):
    try:
        version = getattr(importlib.import_module(name), "__version__", "?")
    except Exception as exc:  # absent, or refusing the installed numpy
        version = f"does not import ({type(exc).__name__}: {exc})"
    print(f"{name}: {version}")
PY

log "## study benchmark (benchmarks/gpu_study.py)"
timeout 300 "$PY" benchmarks/gpu_study.py --out "$RESULTS_DIR" 2>&1 \
    | grep -v "^ *[0-9]*%|" | tee -a "$RESULTS"

if "$PY" -c "import nibabel, nilearn, pytest" 2>/dev/null; then
    log "## GPU tests (pytest -m gpu tests/test_searchlight.py)"
    timeout 60 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/test_searchlight.py 2>&1 \
        | tail -n 15 | tee -a "$RESULTS"
    log "## benchmark on cuda (MNI 2 mm mask, 29 models)"
    timeout 45 "$PY" benchmarks/searchlight.py --device cuda --skip-rsatoolbox 2>&1 \
        | tail -n 8 | tee -a "$RESULTS"
    log "## GLM on cuda (pytest -m gpu tests/test_fastglm_gpu.py; benchmarks/glm.py --device cuda)"
    { timeout 60 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/test_fastglm_gpu.py 2>&1 | tail -n 6; timeout 60 "$PY" benchmarks/glm.py --device cuda --runs 1 --voxel-size 3 2>&1 | tail -n 12; } | tee -a "$RESULTS"
else
    log "## nibabel/nilearn missing: GPU tests, benchmarks/searchlight.py and benchmarks/glm.py skipped (see the header)"
fi
log "## done"
