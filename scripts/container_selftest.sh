#!/usr/bin/env bash
# Self-test of an installed dnnrsa (run by the Dockerfile at build time, by the Apptainer
# image's %test section and by `make container-check`): the command line starts and explains
# itself, the searchlight engine imports, the GPU is reported, torch and torchaudio load
# together, and a fast part of the test suite passes, a tiny participant run of the BIDS App
# among it (GPU tests run when a GPU is passed through with `docker run --gpus all` or
# `apptainer test --nv`, and skip otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
dnnrsa --version
dnnrsa --help >/dev/null
python -c "import dnnrsa.searchlight"
python -c "from dnnrsa.backend import gpu_available; print('dnnrsa GPU available:', gpu_available())"
python -m pytest -q -p no:cacheprovider -m "not slow" tests/test_rdm.py tests/test_backend.py \
    "tests/test_install.py::test_torchaudio_loads_with_the_installed_torch" \
    "tests/test_bids_app.py::test_participant_outputs"
