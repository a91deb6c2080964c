# dnnrsa with its GPU extra (CuPy) on a CUDA runtime image.
#
#   docker build -t dnnrsa .
#   docker run --rm --gpus all -v /data:/data dnnrsa /data/bids /data/out participant \
#       --model-rdm category=/data/category.tsv
#   docker run --rm --gpus all --entrypoint bash dnnrsa scripts/container_selftest.sh
#
# The image installs dnnrsa the way `make install` does (a Python 3.11 virtual environment,
# `pip install ".[test,gpu]"`), runs scripts/container_selftest.sh while building, and has
# `dnnrsa` as its entry point. Without --gpus all everything runs on the CPU.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg \
    DNNRSA_CONTAINER=docker \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
    && apt-get install -y --no-install-recommends software-properties-common gpg-agent ca-certificates \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/*

COPY setup.cfg pyproject.toml README.md /src/
COPY dnnrsa /src/dnnrsa
COPY interfaces /src/interfaces
COPY bids_app /src/bids_app
COPY tests /src/tests
COPY scripts /src/scripts

RUN python3.11 -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-cache-dir --upgrade pip setuptools wheel \
    && /opt/venv/bin/python -m pip install --no-cache-dir "/src[test,gpu]"

RUN bash /src/scripts/container_selftest.sh

WORKDIR /src
ENTRYPOINT ["dnnrsa"]
CMD ["--help"]
