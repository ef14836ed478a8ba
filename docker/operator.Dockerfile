# The kopf operator. Build from the repository root:
#   docker build -f docker/operator.Dockerfile -t ghcr.io/yolo-operator/operator:0.1.0 .
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
 && python3 /usr/local/lib/yolo-build/requirements.py pyproject.toml operator > /tmp/requirements.txt \
 && sh /usr/local/lib/yolo-build/pip-install.sh /opt/venv/bin/python -r /tmp/requirements.txt
COPY README.md VERSION ./
# Only this image's package and yolo_modelprep, whose pure config module renders the plans
# (setuptools looks in gateway/, operator/, modelprep/ and tools/; the others stay empty).
COPY operator ./operator
COPY modelprep ./modelprep
RUN mkdir -p gateway tools \
 && sh /usr/local/lib/yolo-build/pip-install.sh /opt/venv/bin/python --no-deps . \
 && /opt/venv/bin/python -m pip uninstall -q -y pip setuptools \
 && /opt/venv/bin/python -c 'import yolo_operator.handlers'

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="yolo-operator" \
      org.opencontainers.image.source="https://github.com/yolo-operator/yolo-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --uid 1000 --user-group --no-create-home --shell /usr/sbin/nologin yolo
COPY --from=build /opt/venv /opt/venv
USER 1000:1000
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
EXPOSE 8080
ENTRYPOINT ["python", "-m", "yolo_operator"]
CMD ["--all-namespaces"]
