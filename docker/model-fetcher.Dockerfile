# The init container that fetches a model into Triton's repository volume. Build from the
# repository root:
#   docker build -f docker/model-fetcher.Dockerfile -t ghcr.io/yolo-operator/model-fetcher:0.1.0 .
# On PATH (the operator's init container runs `/bin/sh -c "…"` with these):
#   curl                                   http(s)://
#   aws s3 cp SRC DEST                     s3:// (AWS CLI v1; AWS_ENDPOINT_URL for S3-compatible stores)
#   gcloud storage cp SRC DEST             gs:// (a shim over google-cloud-storage, not the Cloud SDK)
#   fetch-model [--sha256 HEX] SRC DEST    any of them, plus file:// and plain paths
#   yolo-model-prepare                     reads the fetched file and writes Triton's config.pbtxt
#                                          (yolo_modelprep: onnx, onnxruntime; batch-axis rewrite)
ARG BASE_IMAGE=python:3.11.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG WHEELS=docker/wheelhouse
COPY ${WHEELS}/ /wheels/
COPY docker/pip-install.sh /usr/local/lib/yolo-build/
COPY docker/model-fetcher/requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
 && sh /usr/local/lib/yolo-build/pip-install.sh /opt/venv/bin/python -r /tmp/requirements.txt setuptools
# Only yolo_modelprep (setuptools looks in gateway/, operator/, modelprep/ and tools/; the others stay empty).
WORKDIR /src
COPY pyproject.toml README.md VERSION ./
COPY modelprep ./modelprep
RUN mkdir -p gateway operator tools \
 && sh /usr/local/lib/yolo-build/pip-install.sh /opt/venv/bin/python --no-deps . \
 && /opt/venv/bin/python -m pip uninstall -q -y pip setuptools \
 && /opt/venv/bin/yolo-model-prepare --help >/dev/null

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="yolo-operator model-fetcher" \
      org.opencontainers.image.source="https://github.com/yolo-operator/yolo-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
# curl is in the local base image; the official python image lacks it.
RUN if ! command -v curl >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends curl ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && useradd --uid 1000 --user-group --no-create-home --shell /usr/sbin/nologin yolo
COPY --from=build /opt/venv /opt/venv
COPY docker/model-fetcher/bin/ /opt/fetcher/bin/
RUN ln -s fetch-model /opt/fetcher/bin/gcloud
USER 1000:1000
ENV PATH=/opt/fetcher/bin:/opt/venv/bin:$PATH HOME=/tmp PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /tmp
ENTRYPOINT ["fetch-model"]
