"""yolo-operator: a kopf operator that serves YOLO detection with NVIDIA Triton on Kubernetes."""

from importlib.metadata import PackageNotFoundError, version

try:  # the VERSION file, through the installed distribution's metadata (pyproject.toml: dynamic)
    __version__ = version("yolo-operator")
except PackageNotFoundError:  # pragma: no cover - a source tree on sys.path without an install
    __version__ = "0+unknown"
