"""yolo-operator: a kopf operator that serves YOLO detection with NVIDIA Triton on Kubernetes."""

__version__ = "0.1.0"
