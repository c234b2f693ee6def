"""Exceptions raised by tinydl. Messages name the op, the argument and the shapes."""

__all__ = [
    "TinydlError",
    "ShapeError",
    "DTypeError",
    "DeviceError",
    "GradcheckError",
    "BackwardError",
    "AnomalyError",
    "SerializationError",
    "ImageTooLargeError",
]


class TinydlError(Exception):
    """Base class of every error tinydl raises on purpose."""


class ShapeError(TinydlError, ValueError):
    """Shapes that do not fit an op, e.g. ``matmul: shapes (3, 4) and (5, 2) do not align``."""


class DTypeError(TinydlError, TypeError):
    """A dtype an op cannot take (an integer tensor asked to require grad, ...)."""


class DeviceError(TinydlError, RuntimeError):
    """Tensors on two devices in one op, or a device that is not available."""


class BackwardError(TinydlError, RuntimeError):
    """Misuse of ``backward``: a freed graph, a non-scalar output without a gradient, ..."""


class GradcheckError(TinydlError, AssertionError):
    """An analytic gradient that disagrees with central differences."""


class AnomalyError(TinydlError, RuntimeError):
    """NaN or Inf in an op's forward output or backward gradient, under ``detect_anomaly()``."""


class SerializationError(TinydlError, ValueError):
    """A file that cannot be saved or loaded: unknown extension, truncated, corrupt, pickled."""


class ImageTooLargeError(TinydlError, ValueError):
    """An image whose decoded pixels would not fit in memory (a decompression bomb): refused
    before decoding, with the file and its pixel count named."""
