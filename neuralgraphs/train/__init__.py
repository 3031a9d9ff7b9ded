"""Training utilities: offline data sets, augmentations, checkpoints, configs and schedules.

Only torch, numpy and the standard library are imported here; scikit-learn, Pillow and PyYAML are
imported by the functions that need them.
"""

from .checkpoint import apply_config, load_checkpoint, load_yaml_config, save_checkpoint
from .data import (CIFAR10Folder, ImageFolderDataset, MNISTFolder, Normalize, RandomCropFlip, digits_loaders,
                   load_digits_dataset, normalize, random_crop_flip)
from .schedules import (CosineMultiplier, MultiStepMultiplier, constant, cosine, cosine_multiplier,
                        label_smoothing_loss, multistep, multistep_multiplier, param_groups_no_weight_decay)
from .loop import HISTORY_KEYS, SCHEDULES, evaluate, fit

__all__ = [
    "load_digits_dataset", "digits_loaders", "CIFAR10Folder", "MNISTFolder", "ImageFolderDataset",
    "RandomCropFlip", "Normalize", "random_crop_flip", "normalize",
    "save_checkpoint", "load_checkpoint", "load_yaml_config", "apply_config",
    "CosineMultiplier", "MultiStepMultiplier", "cosine_multiplier", "multistep_multiplier",
    "cosine", "multistep", "constant", "label_smoothing_loss", "param_groups_no_weight_decay",
    "fit", "evaluate", "SCHEDULES", "HISTORY_KEYS",
]
