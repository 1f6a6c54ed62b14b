"""Data pipeline: datasets, the DataLoader, batch transforms and dataset loaders.

>>> from minidl.data import mnist_subset, TensorDataset, DataLoader
>>> from minidl.data.transforms import Normalize
>>> x, y = mnist_subset("train")
>>> loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, seed=0,
...                     transform=Normalize(0.1307, 0.3081))
>>> xb, yb = next(iter(loader))
>>> xb.shape, xb.dtype, yb.dtype
((64, 1, 28, 28), dtype('float32'), dtype('int64'))
"""
from . import transforms
from .dataset import Dataset, TensorDataset
from .datasets import (
    CHECKSUMS,
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    MIRRORS,
    MNIST_MEAN,
    MNIST_STD,
    DatasetNotFoundError,
    cifar10,
    fashion_mnist,
    mnist,
    mnist_subset,
    read_idx,
    standardize_mnist,
)
from .download import DownloadError, default_root, download_file, sha256_of
from .loader import DataLoader
from .synthetic import blobs, spirals
from .transforms import (
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomResizedCropLite,
    TenCrop,
    ToFloat,
    Transform,
)

__all__ = [
    "Dataset", "TensorDataset", "DataLoader", "transforms",
    "Transform", "Compose", "RandomCrop", "RandomHorizontalFlip", "Normalize", "ToFloat",
    "RandomResizedCropLite", "TenCrop",
    "mnist", "fashion_mnist", "cifar10", "mnist_subset", "read_idx", "spirals", "blobs",
    "download_file", "sha256_of", "default_root", "DownloadError", "DatasetNotFoundError",
    "CHECKSUMS", "MIRRORS", "MNIST_MEAN", "MNIST_STD", "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD", "CIFAR10_MEAN", "CIFAR10_STD", "FASHION_MNIST_CLASSES",
    "CIFAR10_CLASSES", "standardize_mnist",
]
