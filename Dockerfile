# syntax=docker/dockerfile:1
#
# One image for every part of waitroom:
#   python -m gateway            (the default command; HTTP on WAITROOM_PORT, 8000)
#   python -m admission_worker
#   python -m heartbeat_worker
#   python -m waitroom.demo_site (the demo protected site; WAITROOM_DEMO_HOST/_PORT)
#   waitroom up|keys|recover|digest|probe   (the console script)
#
# Build:  docker build -t waitroom:local .
#
# Two stages: the first builds wheels of waitroom and of every dependency; the second
# installs them with pip's --no-index and then removes pip itself, so the final image holds
# no compiler, no build tool, no source tree and no package installer.
#
# Every package pyproject.toml declares is copied below (tests/test_deploy.py checks the
# list against [tool.setuptools.packages.find] and against the modules the entry points
# import), and .dockerignore lets nothing else into the build context: a local .venv, a
# .waitroom/ folder or a secrets/ folder (both hold signing keys) never reach the image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

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
COPY waitroom_site ./waitroom_site
COPY loadtest ./loadtest
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WAITROOM_HOST=0.0.0.0 \
    WAITROOM_PORT=8000 \
    WAITROOM_KEYS_DIR=/var/lib/waitroom/keys \
    WAITROOM_LOG_JSON=true

# The keys folder belongs to the app user, so an empty named volume mounted there inherits
# that owner and `waitroom keys` (or a gateway) can write the first key into it.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels waitroom \
    && pip uninstall --yes pip setuptools wheel \
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
# gateway's /healthz and /readyz?nats=optional, and run `waitroom probe admission|heartbeat`
# for workers.
# SIGTERM stops every part gracefully (see docs/runbook.md); exec form, so it reaches
# Python as PID 1's child under `init: true` / Kubernetes without a shell in between.
CMD ["python", "-m", "gateway"]
