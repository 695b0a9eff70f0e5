"""Evaluation of a detector on a dataset split, one concept per module.

The library (imported by the CLIs below and by validation during training,
training/engine/validation.py):

- `detectors`: what runs the model: `load_onnx_or_checkpoint` (an `.onnx` file on
  `export.backends.load_detector`'s runtime, else a checkpoint) and `TorchDetector`
  (an in-memory or checkpointed PyTorch model);
- `inference`: `run_detector`, a split through the service's pre- and post-processing;
- `scoring`: `metric_inputs` and `evaluate_detector` (VOC and COCO metrics, bootstrap interval);
- `data`: the CLIs' shared model/data flags, split loading and `class_mapping`;
- `report`: the metrics table, JSON output and annotated images.

The command-line tools (thin: flags, then the library):

- `evaluate`: `python -m training.evaluate` (mAP of a model on a split);
- `compare`: `python -m training.compare` (a paired bootstrap of two models or settings);
- `error_analysis`: `python -m training.evaluation.error_analysis` (errors at an operating point).
"""
