#!/usr/bin/env bash
# Self-test of an installed dnnrsa (run by the Dockerfile at build time and by the Apptainer
# image's %test section): the command line starts, the searchlight engine imports, the GPU is
# reported, and a fast subset of the test suite passes (GPU tests run when a GPU is passed
# through with `docker run --gpus all` or `apptainer test --nv`, and skip otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
dnnrsa --version
python -c "import dnnrsa.searchlight"
python -c "from dnnrsa.backend import gpu_available; print('dnnrsa GPU available:', gpu_available())"
python -m pytest -q -p no:cacheprovider -m "not slow" tests/test_rdm.py tests/test_backend.py
