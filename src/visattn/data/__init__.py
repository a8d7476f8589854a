"""Data sets: Fashion-MNIST (idx files, found locally or downloaded), CIFAR folders, ImageFolder trees."""

from .fashion_mnist import CLASSES, DatasetNotFoundError, find_fashion_mnist, load_fashion_mnist
from .idx import IdxFormatError, read_idx

__all__ = ["CLASSES", "DatasetNotFoundError", "IdxFormatError", "find_fashion_mnist", "load_fashion_mnist",
           "read_idx"]
