"""Segmentation losses (Keras ``Loss`` subclasses, ``keras.ops``; voxel-weight aware).

``y_pred`` channels-last probabilities (or logits with ``from_logits=True``); ``y_true`` integer
labels (spatial shape, optionally a trailing 1) or one-hot; ``sample_weight`` with the spatial
shape is a voxel weight map (weight 0 = unlabelled voxel, absent from every sum).
"""

from tfneuro.losses.cross_entropy import (
    WeightedCrossEntropy,
    boundary_mask,
    class_frequencies,
    median_frequency_weights,
    quicknat_boundary_weight,
)
from tfneuro.losses.deep_supervision import DeepSupervisionLoss, nearest_downsample
from tfneuro.losses.dice import (
    DiceCELoss,
    DiceLoss,
    GeneralizedDiceLoss,
    inverse_square_frequency_weights,
)

__all__ = [
    "DiceLoss",
    "GeneralizedDiceLoss",
    "DiceCELoss",
    "WeightedCrossEntropy",
    "DeepSupervisionLoss",
    "class_frequencies",
    "median_frequency_weights",
    "quicknat_boundary_weight",
    "inverse_square_frequency_weights",
    "boundary_mask",
    "nearest_downsample",
]
