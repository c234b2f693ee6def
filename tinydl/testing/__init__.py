"""Public testing helpers: hypothesis strategies and gradient assertions for users' own tests.

Needs ``hypothesis`` (``pip install tinydl[dev]``) for the strategies.
"""

from .asserts import assert_close, assert_grad_close  # noqa: F401
from .strategies import broadcastable_shapes, conv_params, shapes, tensors  # noqa: F401

__all__ = ["assert_close", "assert_grad_close", "broadcastable_shapes", "conv_params", "shapes",
           "tensors"]
