"""The data pipeline: datasets, the batching ``DataLoader``, transforms, MNIST and image folders.

>>> from tinydl.data import DataLoader, MNIST, transforms as T
>>> tf = T.Compose([T.ToTensor(), T.Normalize((0.1307,), (0.3081,))])
>>> loader = DataLoader(MNIST(train=False, transform=tf), batch_size=256)  # doctest: +SKIP
"""

from . import transforms
from .dataset import ArrayDataset, Dataset, Subset, TensorDataset, random_split
from .download import cache_dir, download_file
from .errors import DatasetError, DatasetNotFoundError
from .folder import ImageFolder
from .idx import read_idx, write_idx
from .loader import DataLoader, default_collate
from .mnist import MNIST, FashionMNIST, load_mnist_sample
from .names import load_names

__all__ = [
    "transforms",
    "Dataset",
    "TensorDataset",
    "ArrayDataset",
    "Subset",
    "random_split",
    "DataLoader",
    "default_collate",
    "MNIST",
    "FashionMNIST",
    "ImageFolder",
    "load_mnist_sample",
    "load_names",
    "read_idx",
    "write_idx",
    "download_file",
    "cache_dir",
    "DatasetError",
    "DatasetNotFoundError",
]
