"""Explaining models: Grad-CAM (N-D, and 2D through tf-explain) and heatmap statistics.

TensorFlow-specific (``tf.GradientTape``); see :mod:`tfneuro.explain.gradcam`.
"""

from tfneuro.explain.gradcam import (
                                   grad_cam,
                                   grad_cam_tf_explain,
                                   grad_cam_tf_explain_grid,
                                   resize_maps,
)
from tfneuro.explain.stats import (
                                   heatmap_anova_table,
                                   heatmap_percentile,
                                   heatmap_statistics,
                                   normalize_heatmap,
)

__all__ = ["grad_cam", "grad_cam_tf_explain", "grad_cam_tf_explain_grid", "resize_maps",
           "heatmap_percentile", "heatmap_anova_table", "heatmap_statistics", "normalize_heatmap"]
