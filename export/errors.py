"""Domain errors of the pre-processing path; the service maps them to HTTP statuses."""

from __future__ import annotations


class DetectorError(Exception):
    """Base class: `code` is a stable machine-readable identifier."""

    code = "detector_error"


class ImageDecodeError(DetectorError):
    """The bytes look like an image but cannot be decoded (corrupt, truncated)."""

    code = "image_decode_error"


class UnsupportedImageTypeError(DetectorError):
    """The bytes are not an image format we can read."""

    code = "unsupported_media_type"


class ImageTooLargeError(DetectorError):
    """The image has more pixels than allowed (decompression bombs included)."""

    code = "image_too_large"


class EmptyInputError(DetectorError):
    """No bytes were sent."""

    code = "empty_input"


class ModelMetadataError(DetectorError):
    """The ONNX file lacks the metadata this project writes."""

    code = "model_metadata_error"


class DeadlinePassedError(DetectorError):
    """The caller's deadline passed while the work ran: stopped at a cancellation point
    (a decoder read, a stage boundary, the next image of a batch)."""

    code = "timeout"
