"""yolo-operator's HTTP gateway: images in, YOLO detections from NVIDIA Triton out."""

__version__ = "0.1.0"
