"""``SyncBatchNorm``: batch norm whose statistics are those of the global batch, all ranks'
shares together, with the matching gradient. (Plain ``BatchNorm2d`` under DDP normalizes each
rank's share with its own statistics, as PyTorch's does.)

Forward, per channel: all-reduce the share's sum and size -> the global mean; all-reduce the
sum of squared deviations from it -> the global (biased) variance: the same two passes as the
one-process kernel, so the result matches it to rounding. Backward: all-reduce ``sum(dy)`` and
``sum(dy * xhat)``, then ``dx = weight * inv_std * (dy - sum(dy)/N - xhat * sum(dy xhat)/N)``
with the global count ``N``; the weight and bias gradients stay the share's own sums, which
DDP averages like every other gradient.
"""

from __future__ import annotations

from .. import functional as F
from ..autograd import Function, Tensor
from ..backend import get_array_module
from ..errors import BackwardError
from ..functional.normalization import _update_running
from ..grad_mode import is_grad_enabled
from ..layers import Module
from ..layers.normalization import BatchNorm1d, BatchNorm2d, _BatchNorm
from . import group

__all__ = ["SyncBatchNorm"]


def _sum_over_ranks(*arrays):
    """The per-rank sums of ``arrays`` (1-D, one dtype), all-reduced in one call."""
    xp = get_array_module(arrays[0])
    flat = xp.concatenate(arrays)
    group.all_reduce(flat)
    out, start = [], 0
    for a in arrays:
        out.append(flat[start : start + a.size])
        start += a.size
    return out


class SyncBatchNormFunction(Function):
    """Training-mode batch norm of ``x`` (N, C, *) with statistics over every rank's batch."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, running=None):
        xp = get_array_module(x)
        x3 = x.reshape(x.shape[0], x.shape[1], -1)
        count = xp.asarray([x3.shape[0] * x3.shape[2]], x.dtype)
        total, n = _sum_over_ranks(x3.sum(axis=(0, 2)), count)
        n = int(n[0])
        if n <= 1:
            raise ValueError(
                f"SyncBatchNorm: expected more than 1 value per channel over all ranks, got {n}"
            )
        mean = (total / n).reshape(1, -1, 1)
        xhat = x3 - mean
        (squares,) = _sum_over_ranks((xhat * xhat).sum(axis=(0, 2)))
        var = squares / n
        inv_std = 1 / xp.sqrt(var + eps)
        xhat *= inv_std.reshape(1, -1, 1)
        y = xhat if weight is None else xhat * weight.reshape(1, -1, 1)
        y = y + bias.reshape(1, -1, 1) if bias is not None else y.copy()
        if running is not None:  # with the global statistics and count
            _update_running(running, mean, var, n)
        ctx.n, ctx.inv_std = n, inv_std
        ctx.save_for_backward(xhat.reshape(x.shape), weight)
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        if is_grad_enabled():
            raise BackwardError(
                "SyncBatchNorm: double backward (create_graph=True) is not supported"
            )
        xhat, weight = ctx.saved_tensors
        g3 = grad.data.reshape(grad.shape[0], grad.shape[1], -1)
        h3 = xhat.data.reshape(g3.shape)
        dbias, dweight = g3.sum(axis=(0, 2)), (g3 * h3).sum(axis=(0, 2))
        total_db, total_dw = _sum_over_ranks(dbias, dweight)
        scale = ctx.inv_std if weight is None else weight.data * ctx.inv_std
        dx = g3 - (total_db / ctx.n).reshape(1, -1, 1)
        dx -= h3 * (total_dw / ctx.n).reshape(1, -1, 1)
        dx *= scale.reshape(1, -1, 1)
        needs = ctx.needs_input_grad
        wrap = Tensor.from_array
        return (
            wrap(dx.reshape(grad.shape)) if needs[0] else None,
            wrap(dweight) if needs[1] else None,
            wrap(dbias) if needs[2] else None,
            None,
            None,
        )


class SyncBatchNorm(_BatchNorm):
    """Batch norm over ``(N, C, *)`` with the statistics of the whole global batch in training
    (PyTorch's ``nn.SyncBatchNorm``); in eval mode, or in a world of one process, it is
    ``BatchNorm``. Parameters and buffers as ``BatchNorm2d``, so state dicts move between them.
    ``SyncBatchNorm.convert_sync_batchnorm(model)`` swaps a model's batch norms in place."""

    _dims = (2, 3, 4, 5)

    def _batch_norm(self, x, training: bool, momentum: float, relu: bool = False, residual=None):
        # NOTE: synced only in training mode, as PyTorch (not in eval without running stats)
        # NOTE: ``relu`` (and ``residual``) are applied on their own (no fused kernel for the
        # synced statistics)
        if not (training and self.training) or group.get_world_size() == 1:
            y = super()._batch_norm(x, training, momentum)
        else:
            running = None
            if self.running_mean is not None:
                running = (self.running_mean.data, self.running_var.data, momentum)
            y = SyncBatchNormFunction.apply(x, self.weight, self.bias, self.eps, running)
        if residual is not None:
            return F.add_relu(y, residual)
        return y.relu() if relu else y

    @classmethod
    def convert_sync_batchnorm(cls, module: Module) -> Module:
        """``module`` with every ``BatchNorm1d``/``BatchNorm2d`` replaced by a ``SyncBatchNorm``
        that holds the same parameters and buffers (the module itself if it is one)."""
        if isinstance(module, (BatchNorm1d, BatchNorm2d)):
            sync = cls(
                module.num_features,
                module.eps,
                module.momentum,
                module.affine,
                module.track_running_stats,
            )
            sync.weight, sync.bias = module.weight, module.bias
            if module.track_running_stats:
                sync.running_mean, sync.running_var = module.running_mean, module.running_var
                sync.num_batches_tracked = module.num_batches_tracked
            sync.train(module.training)
            return sync
        for name, child in list(module.named_children()):
            setattr(module, name, cls.convert_sync_batchnorm(child))
        return module
