"""Errors that name what was wrong with the user's input; the CLI prints them without a traceback."""

__all__ = ["SqueezeFPGAError", "ModelFormatError", "BlobFormatError", "ImageError",
           "QuantizationError", "SimulationError"]


class SqueezeFPGAError(Exception):
    """Base of every error caused by bad input rather than by a bug."""


class ModelFormatError(SqueezeFPGAError):
    """The compressed model file is malformed; the message names the layer and byte offset."""


class BlobFormatError(SqueezeFPGAError):
    """A compiled weight blob is malformed; the message names the field and byte offset."""


class ImageError(SqueezeFPGAError):
    """An input image cannot be read or is unusable."""


class QuantizationError(SqueezeFPGAError):
    """A model cannot be represented in the accelerator's fixed-point format."""


class SimulationError(SqueezeFPGAError):
    """The simulator cannot be built or run, or the simulated board misbehaved (timeout, exit)."""
