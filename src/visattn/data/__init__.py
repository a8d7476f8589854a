"""Data sets by name: one file per data set kind, registered with ``@register_dataset``.

Classification: Fashion-MNIST (idx files, found locally or downloaded), cluttered Fashion-MNIST, CIFAR-10/100
folders, ImageFolder trees. Segmentation: Fashion-MNIST scenes, Pascal VOC, images/ + masks/ folders,
Cityscapes, ADE20K.
:func:`list_datasets` lists them and :func:`dataset_info` gives each one's facts; :mod:`.loader` and
:mod:`.segmentation` load them.
"""

from .datasets import CATALOGUE, DatasetInfo, dataset_info, list_datasets, register_dataset
from .fashion_mnist import CLASSES, DatasetNotFoundError, find_fashion_mnist, load_fashion_mnist
from .idx import IdxFormatError, read_idx

# importing each data set kind registers it; this order is the order of list_datasets()
from . import cluttered  # noqa: E402, F401  # isort: skip
from . import cifar  # noqa: E402, F401  # isort: skip
from . import image_folder_data  # noqa: E402, F401  # isort: skip
from . import scenes  # noqa: E402, F401  # isort: skip
from . import seg_folders  # noqa: E402, F401  # isort: skip
from . import cityscapes  # noqa: E402, F401  # isort: skip
from . import ade20k  # noqa: E402, F401  # isort: skip

__all__ = ["CATALOGUE", "CLASSES", "DatasetInfo", "DatasetNotFoundError", "IdxFormatError", "dataset_info",
           "find_fashion_mnist", "list_datasets", "load_fashion_mnist", "read_idx", "register_dataset"]
