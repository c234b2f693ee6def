"""Public testing helpers: hypothesis strategies and gradient assertions for users' own tests.

The assertions need NumPy alone; the strategies need ``hypothesis`` (``pip install
'tinydl[dev]'``) and are imported on first use, so ``assert_grads_match`` works without it.
"""

from .asserts import assert_close, assert_grad_close, assert_grads_match

__all__ = [
    "assert_close",
    "assert_grad_close",
    "assert_grads_match",
    "broadcastable_shapes",
    "conv_params",
    "shapes",
    "tensors",
]

_STRATEGIES = ("broadcastable_shapes", "conv_params", "shapes", "tensors")


def __getattr__(name: str):
    if name in _STRATEGIES:
        from . import strategies

        return getattr(strategies, name)
    raise AttributeError(f"module 'tinydl.testing' has no attribute {name!r}")
