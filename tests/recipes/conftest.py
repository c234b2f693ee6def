"""A stand-in Fashion-MNIST: small IDX files of random images where FashionMNIST looks."""

import numpy as np
import pytest

from tinydl.data import write_idx


@pytest.fixture
def fake_fashion_mnist(tmp_path):
    """A folder of 200 training and 50 test images (random 28x28 pixels, labels 0-9)."""
    root, rng = tmp_path / "fashion-data", np.random.default_rng(0)
    root.mkdir()
    for prefix, n in (("train", 200), ("t10k", 50)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8))
    return root
