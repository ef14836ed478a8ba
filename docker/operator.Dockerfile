# The kopf operator. Build from the repository root:
#   docker build -f docker/operator.Dockerfile -t ghcr.io/yolo-operator/operator:0.1.0 .
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY operator ./operator
RUN pip install --no-cache-dir --prefix=/install '.[operator]'

FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="yolo-operator" \
      org.opencontainers.image.source="https://github.com/yolo-operator/yolo-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /install /usr/local
RUN useradd --uid 1000 --user-group --no-create-home --shell /usr/sbin/nologin yolo
USER 1000:1000
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
EXPOSE 8080
ENTRYPOINT ["python", "-m", "yolo_operator"]
CMD ["--all-namespaces"]
