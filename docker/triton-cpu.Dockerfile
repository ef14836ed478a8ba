# Triton Inference Server 2.51 for the CPU: the tritonserver binary and the python backend
# from the PyPI wheel nvidia-pytriton, with numpy and onnxruntime for the backend's stub.
# Build from the repository root:
#   docker build -f docker/triton-cpu.Dockerfile -t ghcr.io/yolo-operator/triton-cpu:0.1.0 .
#
# Serves two kinds of model directory from --model-repository (default /models):
#   - backend: "python" with a 1/model.py (model_repository/local/*, which runs 1/model.onnx);
#   - platform: "onnxruntime_onnx" (or backend: "onnxruntime") with just 1/model.onnx, as the
#     operator writes them: /opt/tritonserver/backends/onnxruntime is a python-based backend
#     (model_repository/python_backend/onnx_model.py) that runs the ONNX with onnxruntime.
# KIND_CPU instance groups only. Runs as uid 1000 with a read-only root filesystem; the
# python backend needs a writable /dev/shm (an emptyDir with medium Memory in a pod).
ARG BASE_IMAGE=python:3.11.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG WHEELS=docker/wheelhouse
ARG PYTRITON_VERSION=0.7.0
COPY ${WHEELS}/ /wheels/
COPY docker/pip-install.sh /usr/local/lib/yolo-build/
COPY docker/triton-cpu/requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
 && sh /usr/local/lib/yolo-build/pip-install.sh /opt/venv/bin/python -r /tmp/requirements.txt \
 && sh /usr/local/lib/yolo-build/pip-install.sh /opt/venv/bin/python --no-deps --target /tmp/pytriton \
      "nvidia-pytriton==${PYTRITON_VERSION}" \
 && /opt/venv/bin/python -m pip uninstall -q -y pip setuptools
COPY model_repository/python_backend/onnx_model.py /tmp/onnx_model.py
# One backend folder: the python backend with the stub for this base's Python, and the
# python-based "onnxruntime" backend. The wheel's shared libraries go to lib/, where the
# binary's RPATH ($ORIGIN/../lib) finds them; libpython is linked there for the stub.
RUN set -eux; \
    src=/tmp/pytriton/pytriton/tritonserver; dst=/opt/tritonserver; \
    pyver=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
    mkdir -p $dst/bin $dst/lib $dst/backends/python $dst/backends/onnxruntime; \
    cp $src/bin/tritonserver $dst/bin/; \
    cp -a $src/caches $dst/caches; \
    cp -a /tmp/pytriton/nvidia_pytriton.libs/. $dst/lib/; \
    cp $src/backends/python/libtriton_python.so $src/backends/python/triton_python_backend_utils.py \
       $src/python_backend_stubs/$pyver/triton_python_backend_stub $dst/backends/python/; \
    cp /tmp/onnx_model.py $dst/backends/onnxruntime/model.py; \
    libpython=$(python3 -c 'import os, sysconfig as s; print(os.path.join(s.get_config_var("LIBDIR"), s.get_config_var("INSTSONAME")))'); \
    if [ ! -e "$libpython" ]; then libpython=$(ldconfig -p | awk -v n="libpython$pyver.so.1.0" '$1 == n {print $NF; exit}'); fi; \
    test -e "$libpython"; \
    ln -s "$libpython" $dst/lib/; \
    for f in $dst/bin/tritonserver $dst/backends/python/libtriton_python.so $dst/backends/python/triton_python_backend_stub; do \
      if LD_LIBRARY_PATH=$dst/lib ldd $f | grep 'not found'; then exit 1; fi; \
    done; \
    ln -s /opt/venv/lib/python$pyver/site-packages $dst/site-packages; \
    rm -rf /tmp/pytriton

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="yolo-operator triton-cpu" \
      org.opencontainers.image.description="Triton 2.51 (nvidia-pytriton 0.7.0) with the python backend and onnxruntime, CPU only" \
      org.opencontainers.image.source="https://github.com/yolo-operator/yolo-operator" \
      org.opencontainers.image.licenses="Apache-2.0 AND BSD-3-Clause"
RUN useradd --uid 1000 --user-group --no-create-home --shell /usr/sbin/nologin triton
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/tritonserver /opt/tritonserver
# The stub embeds libpython, whose sys.path lacks the venv: PYTHONPATH adds it.
ENV PATH=/opt/tritonserver/bin:/opt/venv/bin:$PATH \
    LD_LIBRARY_PATH=/opt/tritonserver/lib \
    PYTHONPATH=/opt/tritonserver/site-packages \
    PYTHONDONTWRITEBYTECODE=1
USER 1000:1000
WORKDIR /tmp
EXPOSE 8000 8001 8002
ENTRYPOINT ["tritonserver"]
CMD ["--model-repository=/models"]
