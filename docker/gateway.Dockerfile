# The HTTP gateway. Build from the repository root:
#   docker build -f docker/gateway.Dockerfile -t ghcr.io/yolo-operator/gateway:0.1.0 .
# Any Debian-like base with python3 (3.11+) and python3-venv works: docker/build-images.py
# passes --build-arg BASE_IMAGE=localhost/yolo-operator/base-python:bookworm and an offline
# wheelhouse with --build-arg WHEELS=<folder in the build context>.
ARG BASE_IMAGE=python:3.11.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG WHEELS=docker/wheelhouse
COPY ${WHEELS}/ /wheels/
COPY docker/pip-install.sh docker/requirements.py /usr/local/lib/yolo-build/
WORKDIR /src
# Dependencies first: this layer depends on pyproject.toml only, not on the sources.
COPY pyproject.toml ./
RUN python3 -m venv /opt/venv \
 && python3 /usr/local/lib/yolo-build/requirements.py pyproject.toml gateway > /tmp/requirements.txt \
 && sh /usr/local/lib/yolo-build/pip-install.sh /opt/venv/bin/python -r /tmp/requirements.txt
COPY README.md VERSION ./
# Only this image's package (setuptools looks in gateway/, operator/ and tools/; the others stay empty).
COPY gateway ./gateway
RUN mkdir -p operator tools \
 && sh /usr/local/lib/yolo-build/pip-install.sh /opt/venv/bin/python --no-deps . \
 && /opt/venv/bin/python -m pip uninstall -q -y pip setuptools \
 && /opt/venv/bin/python -c 'import yolo_gateway.app'

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="yolo-operator gateway" \
      org.opencontainers.image.source="https://github.com/yolo-operator/yolo-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --uid 1000 --user-group --no-create-home --shell /usr/sbin/nologin yolo
COPY --from=build /opt/venv /opt/venv
USER 1000:1000
# MALLOC_ARENA_MAX: glibc's per-thread arenas kept freed decode buffers (BENCHMARKS.md, finding 9).
ENV PATH=/opt/venv/bin:$PATH MALLOC_ARENA_MAX=2 \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 YOLO_GATEWAY_HOST=0.0.0.0 YOLO_GATEWAY_PORT=8080
EXPOSE 8080
# Read-only root filesystem friendly: nothing is written outside /tmp.
ENTRYPOINT ["python", "-m", "yolo_gateway"]
