"""Contract tests for tfneuro.layers.transformer (UNETR's patch embedding and transformer block).

What the layers compute is tested through UNETR in ``tests/test_models_table2.py`` (MONAI's
weights give MONAI's outputs); this file checks the Keras contract of each layer on its own.
"""

import numpy as np
import pytest

from helpers import check_keras_contract
from tfneuro.layers import PatchEmbedding3D, TransformerBlock


@pytest.mark.parametrize("make,shape", [
    (lambda: PatchEmbedding3D(hidden_size=8, patch_size=4), (2, 8, 4, 12, 1)),
    (lambda: PatchEmbedding3D(hidden_size=6, patch_size=2, dropout_rate=0.1), (1, 4, 6, 2, 2)),
    (lambda: TransformerBlock(hidden_size=16, mlp_dim=32, num_heads=2), (2, 6, 16)),
    (lambda: TransformerBlock(hidden_size=12, mlp_dim=8, num_heads=3, dropout_rate=0.1,
                              qkv_bias=True, unused_cross_attn_norm=False), (1, 5, 12)),
], ids=["patch_embedding", "patch_embedding_dropout", "transformer", "transformer_qkv_bias"])
def test_keras_contract(make, shape):
    """Config, ``.keras`` and symbolic-shape contract (``tests/helpers.py``).

    Seen failing with ``qkv_bias`` dropped from ``TransformerBlock.get_config``:
    transformer_qkv_bias failed with "attributes differ (original, restored): {'qkv_bias':
    (True, False)}"."""
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    out = check_keras_contract(make, x)
    if len(shape) == 5:  # one token per patch, hidden_size features
        layer = make()
        tokens = np.prod([s // layer.patch_size for s in shape[1:4]])
        assert out.shape == (shape[0], tokens, layer.hidden_size)
    else:
        assert out.shape == shape
