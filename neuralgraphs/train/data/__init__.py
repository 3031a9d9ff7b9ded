"""Small, offline data sets and tensor augmentations for the training layer.

Everything here reads local files only; nothing is downloaded. scikit-learn (for the bundled digits) and
Pillow (for image folders) are optional extras imported inside the functions that need them.

One module per source:

* :mod:`.digits`: scikit-learn's bundled 8x8 digits (:func:`load_digits_dataset`, :func:`digits_loaders`),
* :mod:`.cifar`: CIFAR-10 in the official "python version" layout (:class:`CIFAR10Folder`),
* :mod:`.mnist`: MNIST in the original IDX layout, optionally gzip-compressed (:class:`MNISTFolder`),
* :mod:`.folders`: class-per-subfolder image trees (:class:`ImageFolderDataset`),

and :mod:`.transforms` for the augmentations (:func:`random_crop_flip`, :func:`normalize`), which act on
``[C, H, W]`` float tensors, so no torchvision is needed.
"""

from .cifar import CIFAR10Folder
from .digits import digits_loaders, load_digits_dataset
from .folders import ImageFolderDataset
from .mnist import MNISTFolder
from .transforms import (Compose, Normalize, RandomCropFlip, RandomResizedCropFlip, ResizeCenterCrop, normalize,
                         random_crop_flip)

__all__ = [
    "load_digits_dataset",
    "digits_loaders",
    "CIFAR10Folder",
    "MNISTFolder",
    "ImageFolderDataset",
    "RandomCropFlip",
    "Normalize",
    "ResizeCenterCrop",
    "RandomResizedCropFlip",
    "Compose",
    "random_crop_flip",
    "normalize",
]
