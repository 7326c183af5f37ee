"""Vision-transformer parts for UNETR (paper 000 Table 2; Hatamizadeh et al. 2022, section 3.1).

UNETR's encoder is a ViT (Dosovitskiy et al. 2021) on 3D patches. These layers follow MONAI
1.6.1's ``PatchEmbeddingBlock``, ``TransformerBlock``, ``SABlock`` and ``MLPBlock``
(``monai/networks/blocks/{patchembedding,transformerblock,selfattention,mlp}.py``), the
implementation paper 000's comparison models come from, with MONAI's weight layout so that a
MONAI state dict maps onto them one tensor per weight.

(Hatamizadeh et al.'s paper is not in ``shared/papers``; section 3.1 is paraphrased.)

- :class:`PatchEmbedding3D` -- Hatamizadeh sec. 3.1: the volume becomes a sequence of
  flattened, non-overlapping patches, projected linearly to K dimensions, plus a learnable 1D
  position embedding. MONAI ``proj_type="conv"``: a ``P^3`` convolution with stride ``P`` (bias
  on), tokens in x-major order (the order of ``flatten(2)`` in MONAI), plus a learnable
  ``[1, N, K]`` position embedding initialised by normal(0, 0.02) (MONAI's
  ``trunc_normal_(std=0.02, a=-2, b=2)`` cuts at +-2 absolute, i.e. 100 standard deviations:
  in effect untruncated).
- :class:`TransformerBlock` -- Hatamizadeh sec. 3.1, the pre-norm ViT block:
  ``z' = MSA(Norm(z)) + z``, ``z = MLP(Norm(z')) + z'``; MONAI's ``SABlock`` (one ``qkv``
  Dense, no bias by default, scaled dot-product attention, output Dense with bias) and
  ``MLPBlock`` (Dense, exact GELU, Dense). LayerNorm epsilon 1e-5 (PyTorch's default).

Everything is written with ``keras.ops`` (backend-agnostic) and serialisable.
"""

from __future__ import annotations

import keras
from keras import ops


def _check_rate(rate, name):
    if not 0.0 <= float(rate) <= 1.0:
        from tfneuro.errors import InputError

        raise InputError(name, f"must be in [0, 1], got {rate!r}")
    return float(rate)


@keras.saving.register_keras_serializable(package="tfneuro")
class PatchEmbedding3D(keras.layers.Layer):
    """``[B, X, Y, Z, C] -> [B, N, hidden_size]`` patch tokens plus a learnable position embedding.

    ``N = (X/P) * (Y/P) * (Z/P)``; the spatial size must be known when the layer is built (the
    position embedding has one row per patch) and a multiple of ``patch_size``.

    Args:
        hidden_size: embedding width K (768 in UNETR).
        patch_size: cubic patch edge P (16 in UNETR).
        dropout_rate: dropout after adding the position embedding (MONAI ``dropout_rate``).
    """

    def __init__(self, hidden_size=768, patch_size=16, dropout_rate=0.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = int(hidden_size)
        self.patch_size = int(patch_size)
        self.dropout_rate = _check_rate(dropout_rate, f"{type(self).__name__}(dropout_rate)")
        self.proj = keras.layers.Conv3D(self.hidden_size, self.patch_size,
                                        strides=self.patch_size, padding="valid",
                                        name="patch_embeddings")
        self.dropout = keras.layers.Dropout(self.dropout_rate, name="dropout")
        self.position_embeddings = None

    def _num_patches(self, input_shape):
        spatial = tuple(input_shape[1:-1])
        if len(spatial) != 3 or any(s is None or s % self.patch_size for s in spatial):
            from tfneuro.errors import InputError

            raise InputError(type(self).__name__,
                             f"needs a known 3D spatial size, each a multiple of "
                             f"{self.patch_size}, got {tuple(input_shape)}")
        return (spatial[0] // self.patch_size) * (spatial[1] // self.patch_size) * (
            spatial[2] // self.patch_size)

    def build(self, input_shape):
        n = self._num_patches(input_shape)
        self._spatial = tuple(input_shape[1:-1])
        self.proj.build(tuple(input_shape))
        self.position_embeddings = self.add_weight(
            name="position_embeddings", shape=(1, n, self.hidden_size),
            initializer=keras.initializers.RandomNormal(stddev=0.02))
        self.built = True

    def call(self, x, training=None):
        spatial = tuple(x.shape[1:-1])
        if any(s is not None and s != b for s, b in zip(spatial, self._spatial)):
            from tfneuro.errors import InputError

            raise InputError(self.name, f"built for spatial size {self._spatial} (one position "
                                        f"embedding per patch), got {spatial}")
        y = self.proj(x)
        y = ops.reshape(y, (-1, self.position_embeddings.shape[1], self.hidden_size))
        return self.dropout(y + self.position_embeddings, training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self._num_patches(input_shape), self.hidden_size)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, patch_size=self.patch_size,
                      dropout_rate=self.dropout_rate)
        return config


@keras.saving.register_keras_serializable(package="tfneuro")
class TransformerBlock(keras.layers.Layer):
    """Pre-norm ViT block ``[B, N, K] -> [B, N, K]`` (MONAI ``TransformerBlock``).

    ``x = x + out_proj(attention(qkv(norm1(x))))``; ``x = x + linear2(gelu(linear1(norm2(x))))``.

    Args:
        hidden_size: token width K (768 in UNETR).
        mlp_dim: width of the MLP's hidden layer (3072 in UNETR).
        num_heads: attention heads (12 in UNETR); must divide ``hidden_size``.
        dropout_rate: dropout on the attention weights, the attention output and after each
            MLP Dense (MONAI ``dropout_rate``, ``dropout_mode="vit"``).
        qkv_bias: bias on the ``qkv`` projection (MONAI default False).
        unused_cross_attn_norm: also hold the weights of MONAI 1.6.1's ``norm_cross_attn``
            LayerNorm (``gamma`` ones, ``beta`` zeros, K each). MONAI builds it in every
            ``TransformerBlock`` even without cross-attention and never uses it, so those 2K
            parameters never get a gradient; keeping them makes parameter counts and state
            dicts match MONAI's. They do not enter :meth:`call` and are non-trainable (as
            trainable variables without gradients Keras warns about them when training).
    """

    def __init__(self, hidden_size=768, mlp_dim=3072, num_heads=12, dropout_rate=0.0,
                 qkv_bias=False, unused_cross_attn_norm=True, **kwargs):
        super().__init__(**kwargs)
        from tfneuro.errors import InputError

        self.hidden_size = int(hidden_size)
        self.mlp_dim = int(mlp_dim)
        self.num_heads = int(num_heads)
        if self.num_heads < 1 or self.hidden_size % self.num_heads:
            raise InputError(f"{type(self).__name__}(num_heads)",
                             f"must divide hidden_size={self.hidden_size}, got {num_heads!r}")
        self.dropout_rate = _check_rate(dropout_rate, f"{type(self).__name__}(dropout_rate)")
        self.qkv_bias = bool(qkv_bias)
        self.unused_cross_attn_norm = bool(unused_cross_attn_norm)
        self.head_dim = self.hidden_size // self.num_heads
        k = self.hidden_size
        self.norm1 = keras.layers.LayerNormalization(epsilon=1e-5, name="norm1")
        self.qkv = keras.layers.Dense(3 * k, use_bias=self.qkv_bias, name="qkv")
        self.out_proj = keras.layers.Dense(k, name="out_proj")
        self.drop_weights = keras.layers.Dropout(self.dropout_rate, name="drop_weights")
        self.drop_output = keras.layers.Dropout(self.dropout_rate, name="drop_output")
        self.norm2 = keras.layers.LayerNormalization(epsilon=1e-5, name="norm2")
        self.linear1 = keras.layers.Dense(self.mlp_dim, name="linear1")
        self.linear2 = keras.layers.Dense(k, name="linear2")
        self.drop1 = keras.layers.Dropout(self.dropout_rate, name="drop1")
        self.drop2 = keras.layers.Dropout(self.dropout_rate, name="drop2")
        self.norm_cross_attn = []  # [gamma, beta] once built, if unused_cross_attn_norm

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in (self.norm1, self.qkv, self.out_proj, self.norm2, self.linear1):
            layer.build(shape)
        self.linear2.build((*shape[:-1], self.mlp_dim))
        if self.unused_cross_attn_norm:
            self.norm_cross_attn = [
                self.add_weight(name=f"norm_cross_attn_{w}", shape=(self.hidden_size,),
                                initializer=init, trainable=False)
                for w, init in (("gamma", "ones"), ("beta", "zeros"))]
        self.built = True

    def _attention(self, x, training):
        # MONAI SABlock: "b h (qkv l d) -> qkv b l h d" (h = tokens, l = heads)
        n = ops.shape(x)[1]
        qkv = ops.reshape(self.qkv(x), (-1, n, 3, self.num_heads, self.head_dim))
        qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))  # [3, B, heads, N, d]
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = ops.einsum("blxd,blyd->blxy", q, k) * (self.head_dim ** -0.5)
        att = self.drop_weights(ops.softmax(att, axis=-1), training=training)
        y = ops.einsum("blxy,blyd->blxd", att, v)
        y = ops.reshape(ops.transpose(y, (0, 2, 1, 3)), (-1, n, self.hidden_size))
        return self.drop_output(self.out_proj(y), training=training)

    def call(self, x, training=None):
        x = x + self._attention(self.norm1(x), training)
        h = ops.gelu(self.linear1(self.norm2(x)), approximate=False)  # torch nn.GELU(): exact
        h = self.drop2(self.linear2(self.drop1(h, training=training)), training=training)
        return x + h

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, mlp_dim=self.mlp_dim,
                      num_heads=self.num_heads, dropout_rate=self.dropout_rate,
                      qkv_bias=self.qkv_bias, unused_cross_attn_norm=self.unused_cross_attn_norm)
        return config
