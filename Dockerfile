# dnnrsa with its GPU extra (CuPy) on a Debian 12 base.
#
#   docker build -t dnnrsa .
#   docker run --rm --gpus all -v /data:/data dnnrsa /data/bids /data/out participant \
#       --model-rdm category=/data/category.tsv
#   docker run --rm --gpus all --entrypoint bash dnnrsa scripts/container_selftest.sh
#
# Debian 12 ships Python 3.11. The CUDA libraries (runtime, cuBLAS, cuDNN, NVRTC...) arrive as
# wheels of the locked environment (requirements/lock.txt, the one `make install` uses) and the
# GPU driver comes from the host (`--gpus all`), so the base needs no CUDA. Without a GPU
# everything runs on the CPU. BASE_IMAGE may name any Debian 12 image, for example one
# bootstrapped locally from the Debian archive (scripts/container_check.sh).
ARG BASE_IMAGE=docker.io/library/debian:12-slim
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg \
    DNNRSA_CONTAINER=docker \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# The locked environment first: it changes rarely, so this layer is reused across code changes.
COPY requirements /src/requirements
RUN python3.11 -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-cache-dir --require-hashes -r /src/requirements/bootstrap.txt \
    && /opt/venv/bin/python -m pip install --no-cache-dir --require-hashes -r /src/requirements/lock.txt

COPY setup.cfg pyproject.toml README.md /src/
COPY dnnrsa /src/dnnrsa
COPY interfaces /src/interfaces
COPY bids_app /src/bids_app
COPY tests /src/tests
COPY scripts /src/scripts

RUN /opt/venv/bin/python -m pip install --no-cache-dir --no-deps --no-build-isolation /src \
    && rm -rf /src/build

RUN bash /src/scripts/container_selftest.sh

WORKDIR /src
ENTRYPOINT ["dnnrsa"]
CMD ["--help"]
