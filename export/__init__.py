"""ONNX export (torch side: export.onnx_export, export.quantize, export.__main__) and the
NumPy-only pre/post-processing shared by evaluation, parity tests and the service."""
