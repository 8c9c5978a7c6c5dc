# syntax=docker/dockerfile:1
#
# One image for every part of waitroom:
#   python -m gateway            (the default command; HTTP on WAITROOM_PORT, 8000)
#   python -m admission_worker
#   python -m heartbeat_worker
#   waitroom keys list|rotate|retire --keys-dir DIR   (default: WAITROOM_KEYS_DIR)
#   waitroom probe admission|heartbeat                (a worker's liveness check)
#
# Build:  docker build -t waitroom:0.1.0 .
#
# Only the files the package needs are copied, so a local .venv or a .waitroom/ folder
# (which holds signing keys) never ends up in the image.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY gateway ./gateway
COPY admission_worker ./admission_worker
COPY heartbeat_worker ./heartbeat_worker
COPY waitroom ./waitroom
COPY loadtest ./loadtest
# Wheels of the project and of every dependency, installed in the final stage without
# compilers or the source tree.
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WAITROOM_HOST=0.0.0.0 \
    WAITROOM_PORT=8000 \
    WAITROOM_KEYS_DIR=/var/lib/waitroom/keys \
    WAITROOM_LOG_JSON=true

# The keys folder belongs to the app user, so an empty named volume mounted there inherits
# that owner and `waitroom keys` (or a gateway) can write the first key into it.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels waitroom \
    && groupadd --system --gid 10001 waitroom \
    && useradd --system --uid 10001 --gid waitroom --home-dir /home/waitroom \
       --create-home --shell /usr/sbin/nologin waitroom \
    && mkdir -p /var/lib/waitroom/keys \
    && chown -R waitroom:waitroom /var/lib/waitroom \
    && chmod 0700 /var/lib/waitroom/keys

USER 10001:10001
WORKDIR /home/waitroom
EXPOSE 8000

# No HEALTHCHECK here: each part needs its own check. compose.yaml and k8s/ probe the
# gateway's /healthz and /readyz, and run `waitroom probe admission|heartbeat` for workers.
CMD ["python", "-m", "gateway"]
