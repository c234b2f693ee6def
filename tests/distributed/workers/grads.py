"""One rank's gradients after DDP backward, written to ``OUT/rank<R>.npz``.

``python -m mpi4py tests/distributed/workers/grads.py MODEL BN OUT [BUCKET_MB]``: MODEL is
``lenet`` or ``cnn`` (MnistCNN without dropout), BN ``plain`` (per-rank statistics) or
``sync`` (SyncBatchNorm); every rank builds the same float64 model and batch and takes its
share of the rows (``share``). ``reference_grads`` computes the same in one process.
"""

from __future__ import annotations

import sys

import numpy as np

import tinydl as td
import tinydl.distributed as dist
import tinydl.functional as F
from tinydl.layers import LeNet5, MnistCNN

BATCH = 12


def build(model: str, bn: str):
    td.manual_seed(0)
    net = LeNet5() if model == "lenet" else MnistCNN(width=4, hidden=8, dropout=0.0)
    if bn == "sync":
        net = dist.SyncBatchNorm.convert_sync_batchnorm(net)
    return net.to(td.float64)


def batch():
    rng = np.random.default_rng(1)
    return rng.standard_normal((BATCH, 1, 28, 28)), rng.integers(0, 10, BATCH)


def share(n: int, rank: int, world: int) -> slice:
    bounds = np.linspace(0, n, world + 1).astype(int)
    return slice(bounds[rank], bounds[rank + 1])


def grads_of(net, x, y) -> dict:
    loss = F.cross_entropy(net(td.tensor(x)), td.tensor(y))
    loss.backward()
    return {name: p.grad.numpy().copy() for name, p in net.named_parameters()}


def reference_grads(model: str, bn: str, world: int) -> dict:
    """What DDP on ``world`` ranks must give, in one process: with ``sync`` batch norm the
    gradient of the whole batch; with per-rank batch norm the mean of each share's gradient."""
    x, y = batch()
    if bn == "sync" or model == "lenet":
        return grads_of(build(model, "plain"), x, y)
    parts = [
        grads_of(build(model, bn), x[s], y[s])
        for s in (share(BATCH, r, world) for r in range(world))
    ]
    return {k: np.mean([p[k] for p in parts], axis=0) for k in parts[0]}


def main(model: str, bn: str, out: str, bucket_mb: float = 25) -> None:
    dist.init()
    rank, world = dist.get_rank(), dist.get_world_size()
    net = build(model, bn)
    if rank > 0:  # DDP must overwrite this with rank 0's weights
        for p in net.parameters():
            p.data += 1.0
    ddp = dist.DistributedDataParallel(net, bucket_cap_mb=bucket_mb)
    x, y = batch()
    s = share(BATCH, rank, world)
    loss = F.cross_entropy(ddp(td.tensor(x[s])), td.tensor(y[s]))
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in net.named_parameters()}
    np.savez(f"{out}/rank{rank}.npz", **grads)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], *(float(a) for a in sys.argv[4:]))
