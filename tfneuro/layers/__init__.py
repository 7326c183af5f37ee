"""Keras layers shared by the five systems.

Names are resolved lazily (PEP 562) so that importing one layer does not import all of them.
:func:`custom_objects` imports every layer module, which registers each class with Keras
serialization; call it (or import the model modules) before loading a ``.keras`` file.
"""

from __future__ import annotations

from tfneuro.utils.lazy import lazy_exports

# public name -> submodule that defines it
_EXPORTS = {
    # pooling.py: index-preserving pooling / unpooling (QuickNAT, InfiNet)
    "MaxPoolingWithArgmax2D": "pooling",
    "MaxUnpooling2D": "pooling",
    # dense.py: QuickNAT dense blocks and the FastSurfer competitive (maxout) variant
    "DenseBlock": "dense",
    "CompetitiveDenseBlock": "dense",
    # residual.py: 3D residual block (paper 002) and 3D U-Net encoder/decoder blocks
    "ResidualBlock3D": "residual",
    "UNetEncoderBlock3D": "residual",
    "UNetDecoderBlock3D": "residual",
    # transformer.py: ViT patch embedding and pre-norm transformer block (UNETR, paper 000 Table 2)
    "PatchEmbedding3D": "transformer",
    "TransformerBlock": "transformer",
    # heads.py: paper 004 side-output "specialized layer", resize-to-reference, pad/crop
    "SideOutput": "heads",
    "ResizeLike": "heads",
    "PadToMultiple": "heads",
    "CropLike": "heads",
}

__getattr__, __dir__, _names = lazy_exports(__name__, _EXPORTS)
__all__ = _names + ["custom_objects"]


def custom_objects() -> dict:
    """Import every layer module and return ``{class name: class}`` for Keras loading."""
    return {name: __getattr__(name) for name in _EXPORTS}
