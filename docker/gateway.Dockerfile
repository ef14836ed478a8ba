# The HTTP gateway. Build from the repository root:
#   docker build -f docker/gateway.Dockerfile -t ghcr.io/yolo-operator/gateway:0.1.0 .
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY operator ./operator
RUN pip install --no-cache-dir --prefix=/install '.[gateway]'

FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="yolo-operator gateway" \
      org.opencontainers.image.source="https://github.com/yolo-operator/yolo-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /install /usr/local
RUN useradd --uid 1000 --user-group --no-create-home --shell /usr/sbin/nologin yolo
USER 1000:1000
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 YOLO_GATEWAY_HOST=0.0.0.0 YOLO_GATEWAY_PORT=8080
EXPOSE 8080
# Read-only root filesystem friendly: nothing is written outside /tmp.
ENTRYPOINT ["python", "-m", "yolo_gateway"]
