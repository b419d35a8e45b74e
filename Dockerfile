# syntax=docker/dockerfile:1
# model-agent: the OME model agent as a slim image (root by default, as OME's; run it as
# 65532 with manifests/daemonset.yaml).
#   docker build -t model-agent:0.1.0 .
#   docker run --rm model-agent:0.1.0 --help
# Stage 1 builds wheels for the package and every dependency; stage 2 installs only those
# wheels on a slim Python, with no compiler, no pip cache and no source tree. The base image is
# pinned by digest and the dependencies by requirements.lock (versions and hashes), so two
# builds of one commit install the same bytes. To move the base: docker buildx imagetools
# inspect python:3.11-slim-bookworm, then put the new tag and digest here.
ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.lock ./
RUN python -m pip wheel --wheel-dir /wheels --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY model_agent ./model_agent
COPY handlers ./handlers
RUN python -m pip wheel --wheel-dir /wheels --no-deps .

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp
# UID/GID 65532 exists for hardened deployments: manifests/daemonset.yaml runs the agent as
# 65532 explicitly (its init container hands the models root to that user). The image's default
# user stays root, as OME's agent image: OME's DaemonSet and Helm chart set no securityContext
# and mount a hostPath the kubelet creates as root, and must run this image unchanged.
RUN groupadd --system --gid 65532 model-agent \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /tmp \
       --shell /usr/sbin/nologin model-agent
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels model-agent \
    && model-agent --help >/dev/null
# 8080: /healthz /readyz /livez /metrics; 8081: Kopf's liveness endpoint; 8090: the peer
# server, only with --peer-port 8090 (as manifests/daemonset.yaml runs it).
EXPOSE 8080 8081 8090
# For `docker run`; Kubernetes uses the DaemonSet's probes instead. No shell or curl needed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/livez', timeout=4).status != 200)"]
ENTRYPOINT ["model-agent", "run"]
