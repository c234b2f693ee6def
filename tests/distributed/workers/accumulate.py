"""Unused parameters and ``no_sync`` on 2 ranks; a failed check exits non-zero.

Rank 0 uses layers ``a`` and ``b``, rank 1 only ``a``; ``c`` is used by none. Under
``no_sync`` the gradients stay local; the next backward outside reduces all accumulated."""

from __future__ import annotations

import numpy as np

import tinydl as td
import tinydl.distributed as dist
from tinydl.layers import Linear, Module


class Net(Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = Linear(3, 3), Linear(3, 1), Linear(3, 1)

    def forward(self, x, use_b: bool):
        h = self.a(x)
        return (self.b(h) if use_b else h).sum()


def local_grads(net, x, use_b) -> dict:
    net.zero_grad()
    net(td.tensor(x), use_b).backward()
    return {k: None if p.grad is None else p.grad.numpy().copy() for k, p in net.named_parameters()}


def main() -> None:
    dist.init()
    rank, world = dist.get_rank(), dist.get_world_size()
    assert world == 2
    td.manual_seed(0)
    net = Net().to(td.float64)
    xs = [np.random.default_rng([r, 7]).standard_normal((4, 3)) for r in range(world)]
    # what each rank computes alone (before DDP hooks its parameters)
    alone = [local_grads(net, xs[r], use_b=r == 0) for r in range(world)]
    ddp = dist.DistributedDataParallel(net)

    net.zero_grad()
    ddp(td.tensor(xs[rank]), rank == 0).backward()
    grads = dict(net.named_parameters())
    for name in ("a.weight", "a.bias"):
        np.testing.assert_allclose(grads[name].grad.numpy(), (alone[0][name] + alone[1][name]) / 2)
    for name in ("b.weight", "b.bias"):  # rank 1 contributes zeros
        np.testing.assert_allclose(grads[name].grad.numpy(), alone[0][name] / 2)
    assert grads["c.weight"].grad is None and grads["c.bias"].grad is None

    net.zero_grad()
    with ddp.no_sync():
        ddp(td.tensor(xs[rank]), True).backward()
        local = net.a.weight.grad.numpy().copy()
    ddp(td.tensor(xs[rank]), True).backward()  # reduces both passes' sum
    both = np.zeros((world, *local.shape))  # each rank fills its row; the sum gathers them
    both[rank] = local
    dist.all_reduce(both)  # each rank's local part, gathered
    np.testing.assert_allclose(net.a.weight.grad.numpy(), 2 * both.sum(0) / world)
    print(f"rank {rank}: ok")


if __name__ == "__main__":
    main()
