#!/bin/sh
# pip-install PYTHON PIP-INSTALL-ARGS...
# Runs "PYTHON -m pip install ARGS" offline from /wheels when that folder holds wheels
# (docker/build-images.py passes one with --build-arg WHEELS=...), else from PyPI.
set -eu
python=$1
shift
if ls /wheels/*.whl >/dev/null 2>&1; then
  set -- --no-index --find-links=/wheels "$@"
fi
exec env PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
  "$python" -m pip install "$@"
