"""BatchNorm1d, BatchNorm2d and LayerNorm."""

from __future__ import annotations

from .. import functional as F
from ..errors import ShapeError
from ..tensor import Parameter, ones, tensor, zeros
from .activation import ReLU
from .module import Module

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm"]


class _BatchNorm(Module):
    _dims: tuple[int, ...] = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype=None,
    ):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Parameter(ones(num_features, dtype=dtype)) if affine else None
        self.bias = Parameter(zeros(num_features, dtype=dtype)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", tensor(0))
        else:
            self.running_mean = self.running_var = None

    def forward(self, x, *, relu: bool = False, residual=None):
        """``relu=True``: ``relu(self(x))`` as one fused op (see ``fused_with``); with a
        ``residual`` too, ``relu(self(x) + residual)`` (``F.batch_norm``'s ``residual``,
        composed by ``SyncBatchNorm``)."""
        name = type(self).__name__
        if x.ndim not in self._dims:
            raise ShapeError(
                f"{name}: expected a {' or '.join(f'{d}-D' for d in self._dims)} "
                f"input, got shape {x.shape}"
            )
        if x.shape[1] != self.num_features:
            raise ShapeError(
                f"{name}: expected {self.num_features} channels (dim 1), got shape {x.shape}"
            )
        momentum = self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if momentum is None:  # cumulative moving average, as PyTorch
                momentum = 1.0 / float(self.num_batches_tracked.item())
        training = self.training or self.running_mean is None
        return self._batch_norm(x, training, momentum, relu=relu, residual=residual)

    def fused_with(self, nxt):
        """``x -> nxt(self(x))`` as one op when ``nxt`` is a plain ``ReLU`` (the fused
        ``F.batch_norm_relu``: no ``xhat`` kept, no ReLU passes), else None."""
        return (lambda x: self.forward(x, relu=True)) if type(nxt) is ReLU else None

    def _batch_norm(self, x, training: bool, momentum: float, relu: bool = False, residual=None):
        """The normalization proper, then ReLU with ``relu`` (after adding ``residual``)
        (``SyncBatchNorm`` replaces it in training)."""
        return F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            training=training,
            momentum=momentum,
            eps=self.eps,
            relu=relu,
            residual=residual,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch norm over ``(N, C)`` or ``(N, C, L)``."""

    _dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over ``(N, C, H, W)``."""

    _dims = (4,)


class LayerNorm(Module):
    """Normalize over the last ``len(normalized_shape)`` dimensions."""

    def __init__(
        self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, dtype=None
    ):
        super().__init__()
        shape = (
            (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        )
        self.normalized_shape, self.eps = shape, eps
        self.weight = Parameter(ones(*shape, dtype=dtype)) if elementwise_affine else None
        self.bias = Parameter(zeros(*shape, dtype=dtype)) if elementwise_affine else None

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.weight is not None}"
        )
