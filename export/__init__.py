"""The torch-free runtime (boxes, preprocess, postprocess, metadata, errors, runtime, inferer):
NumPy + Pillow + ONNX Runtime, shared by evaluation, parity tests and the service. The offline
exporter (torch, onnx) lives apart in export.exporter, run as `python -m export`."""
