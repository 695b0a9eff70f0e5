"""The offline exporter (torch and onnx): checkpoint -> ONNX, parity checks, INT8 quantization.
Never imported by the service; the container image does not ship this folder."""
