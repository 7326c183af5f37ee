"""UNETR, one of the comparison models of NEC-NET's Table 2 (paper 000 section 3.1).

Paper 000 section 3.1 compares NEC-NET with "Vnet, SegResNet, UnetR" (Table 2: UNetR Dice
0.8025 vs NEC-NET 0.8434; its reference 23 is Hatamizadeh et al., "UNETR: Transformers for 3D
medical image segmentation", WACV 2022). The comparison models come from MONAI; this is MONAI
1.6.1's ``monai.networks.nets.UNETR`` layer for layer (``spatial_dims=3``, ``proj_type="conv"``):
``UNETR(in_channels=C, out_channels=K, img_size=S)`` and
``unetr(num_classes=K, input_shape=(*S, C))`` have the same parameters (92,802,274 for C=1, K=2,
S=96^3). (Hatamizadeh et al.'s paper is not in ``shared/papers``; its section 3.1 is
paraphrased, the layer details are read from MONAI's source.)

- Encoder (Hatamizadeh sec. 3.1): the volume is cut into 16^3 patches, embedded linearly to
  ``hidden_size`` (768) with a learnable position embedding
  (:class:`tfneuro.layers.PatchEmbedding3D`), then 12 pre-norm transformer blocks with
  ``num_heads`` (12) heads and an MLP of ``mlp_dim`` (3072) (:class:`tfneuro.layers.
  TransformerBlock`), then a final LayerNorm.
- Skips (Hatamizadeh sec. 3.1 and Fig. 2): token sequences reshaped back to a
  ``S/16`` grid and brought to full resolution by 2x2x2 stride-2 transposed convolutions
  (no bias), each followed (``conv_block=True``) by a 3x3x3 residual block, to 2, 4 and 8 x
  ``feature_size`` channels (MONAI ``UnetrPrUpBlock``). MONAI takes the outputs of transformer
  blocks 4, 7 and 10 (``hidden_states_out[3], [6], [9]``) and the final LayerNorm output; the
  paper names them z3, z6, z9, z12. We follow MONAI.
- The input itself goes through one 3x3x3 residual block to ``feature_size`` (16) channels.
- Decoder: four ``UnetrUpBlock`` (2x2x2 stride-2 transposed conv without bias, concatenated
  with the skip, 3x3x3 residual block) to 8, 4, 2, 1 x ``feature_size`` channels, then a 1x1x1
  convolution with bias.
- Residual blocks are MONAI's ``UnetResBlock`` = :class:`tfneuro.layers.ResidualBlock3D`
  (conv -> norm -> LeakyReLU(0.01) -> conv -> norm, + shortcut (1x1x1 conv + norm when the
  channels change), LeakyReLU; convolutions without bias); ``res_block=False`` gives MONAI's
  ``UnetBasicBlock`` = :class:`tfneuro.layers.residual.ConvNormAct3D`. MONAI's ``"instance"``
  norm is ``InstanceNorm3d(affine=False)``: ``norm="instance_noaffine"`` here (no parameters).
- MONAI 1.6.1 builds a LayerNorm ``norm_cross_attn`` in every transformer block that its
  forward pass never uses (12 x 2 x 768 = 18,432 of the 92,802,274 parameters; they never get a
  gradient). They are kept (``unused_cross_attn_norm=True``) so that counts and state dicts
  match MONAI, as non-trainable weights (Keras warns about trainable variables without
  gradients): ``count_params()`` is 92,802,274, the trainable count 92,783,842.
  ``unused_cross_attn_norm=False`` leaves them out.

Departures:
- Output: the final 1x1x1 convolution is tfneuro's ``classifier`` layer followed by a float32
  softmax (MONAI returns logits).
- Only ``proj_type="conv"`` (MONAI's default) is offered; the 12 layers, the 16^3 patches and
  the skip taps are fixed as in MONAI. Initialisers are Keras' defaults except the position
  embedding (normal, std 0.02, as MONAI).
- MONAI's ``img_size`` is ``input_shape[:3]``: the spatial size must be known and each dim a
  multiple of 16 (the position embedding has one row per patch), else ``InputError``; the
  model only takes volumes of that size (export and sliding-window inference use it as the
  window).
"""

from __future__ import annotations

import keras

from tfneuro.errors import InputError
from tfneuro.layers.residual import ConvNormAct3D, ResidualBlock3D, UNetDecoderBlock3D
from tfneuro.layers.transformer import PatchEmbedding3D, TransformerBlock
from tfneuro.models._common import (check_choice, check_input_shape, check_num_classes,
                                    check_positive, classifier_head, registered_model)
from tfneuro.models.unet3d import check_spatial_multiple

PATCH_SIZE = 16  #: MONAI UNETR's fixed patch edge
NUM_LAYERS = 12  #: MONAI UNETR's fixed number of transformer blocks
SKIP_BLOCKS = (3, 6, 9)  #: MONAI ``hidden_states_out`` indices feeding encoder2/3/4
_NORMS = ("instance_noaffine", "instance", "batch")


def _block(filters, res_block, norm, name):
    """MONAI ``UnetResBlock`` (residual) or ``UnetBasicBlock``, 3x3x3, stride 1."""
    if res_block:
        return ResidualBlock3D(filters, 3, 1, norm=norm, activation="leaky_relu",
                               negative_slope=0.01, name=name)
    return ConvNormAct3D(filters, 3, 1, 2, norm=norm, activation="leaky_relu",
                         negative_slope=0.01, name=name)


def _transp_conv(filters, name):
    return keras.layers.Conv3DTranspose(filters, 2, strides=2, padding="valid", use_bias=False,
                                        name=name)


def _pr_up(x, filters, num_layer, conv_block, res_block, norm, name):
    """MONAI ``UnetrPrUpBlock``: transposed conv, then ``num_layer`` x (transposed conv + block)."""
    x = _transp_conv(filters, f"{name}_transp_conv_init")(x)
    for j in range(num_layer):
        x = _transp_conv(filters, f"{name}_blocks{j}_transp_conv")(x)
        if conv_block:
            x = _block(filters, res_block, norm, f"{name}_blocks{j}_conv")(x)
    return x


def unetr(num_classes=2, input_shape=(96, 96, 96, 1), feature_size=16, hidden_size=768,
          mlp_dim=3072, num_heads=12, norm="instance_noaffine", conv_block=True, res_block=True,
          dropout_rate=0.0, qkv_bias=False, unused_cross_attn_norm=True, name="unetr"):
    """Build MONAI's UNETR (Hatamizadeh et al. 2022) for paper 000's Table 2.

    Args:
        num_classes: output classes K (2: background / neurocranium, paper 000).
        input_shape: ``(X, Y, Z, C)`` with known X, Y, Z, multiples of 16 (MONAI's ``img_size``;
            96^3 in the MONAI examples and paper 000's window).
        feature_size: channels of the full-resolution level (16); the skips have 2, 4, 8 x.
        hidden_size: transformer width (768).
        mlp_dim: transformer MLP width (3072).
        num_heads: attention heads (12); must divide ``hidden_size``.
        norm: norm of the convolutional blocks: "instance_noaffine" (MONAI's "instance",
            default), "instance" (affine) or "batch".
        conv_block: residual/basic blocks after the skips' transposed convolutions (True).
        res_block: residual blocks (True, ``UnetResBlock``) or plain ones (``UnetBasicBlock``).
        dropout_rate: transformer dropout (0.0).
        qkv_bias: bias on the attention's qkv projection (False).
        unused_cross_attn_norm: keep MONAI 1.6.1's unused ``norm_cross_attn`` LayerNorms (True,
            for equal parameter counts and state dicts).
        name: model name (the registry name, which export uses to find the model's spec).

    Returns:
        A functional ``keras.Model`` mapping ``[B, X, Y, Z, C]`` to softmax ``[B, X, Y, Z, K]``.
    """
    num_classes = check_num_classes(num_classes, name)
    input_shape = check_input_shape(input_shape, 3, name)
    if any(s is None for s in input_shape[:3]):
        raise InputError(f"{name}(input_shape)", f"UNETR is built for one volume size (MONAI "
                                                 f"img_size); give X, Y, Z, got {input_shape!r}")
    check_spatial_multiple(input_shape, PATCH_SIZE, flag=f"{name}(input_shape)")
    feature_size = check_positive(feature_size, "feature_size", name)
    hidden_size = check_positive(hidden_size, "hidden_size", name)
    mlp_dim = check_positive(mlp_dim, "mlp_dim", name)
    num_heads = check_positive(num_heads, "num_heads", name)
    if hidden_size % num_heads:
        raise InputError(f"{name}(num_heads)",
                         f"must divide hidden_size={hidden_size}, got {num_heads}")
    check_choice(norm, _NORMS, "norm", name)
    if not 0.0 <= float(dropout_rate) <= 1.0:
        raise InputError(f"{name}(dropout_rate)", f"must be in [0, 1], got {dropout_rate!r}")

    inputs = keras.Input(shape=input_shape, name="image")
    grid = tuple(s // PATCH_SIZE for s in input_shape[:3])
    x = PatchEmbedding3D(hidden_size, PATCH_SIZE, dropout_rate, name="patch_embedding")(inputs)
    hidden = []
    for i in range(NUM_LAYERS):
        x = TransformerBlock(hidden_size, mlp_dim, num_heads, dropout_rate, qkv_bias,
                             unused_cross_attn_norm, name=f"vit_block{i}")(x)
        hidden.append(x)
    x = keras.layers.LayerNormalization(epsilon=1e-5, name="vit_norm")(x)

    def proj_feat(tokens, tag):  # MONAI proj_feat: tokens (x-major) back to the patch grid
        return keras.layers.Reshape((*grid, hidden_size), name=f"proj_feat_{tag}")(tokens)

    enc1 = _block(feature_size, res_block, norm, "encoder1")(inputs)
    encs = [enc1]
    for k, (block, num_layer) in enumerate(zip(SKIP_BLOCKS, (2, 1, 0))):
        encs.append(_pr_up(proj_feat(hidden[block], f"encoder{k + 2}"),
                           feature_size * 2 ** (k + 1), num_layer, conv_block, res_block, norm,
                           f"encoder{k + 2}"))
    x = proj_feat(x, "decoder5")
    for k, skip in zip((5, 4, 3, 2), reversed(encs)):  # MONAI decoder5 .. decoder2
        x = UNetDecoderBlock3D(int(skip.shape[-1]), up_filters=int(skip.shape[-1]),
                               residual=res_block, kernel_size=3, norm=norm,
                               activation="leaky_relu", negative_slope=0.01, up_bias=False,
                               name=f"decoder{k}")([x, skip])
    outputs = classifier_head(x, num_classes, ndim=3)  # MONAI out (UnetOutBlock, 1x1x1, bias)
    return registered_model(inputs, outputs, name=name, registry_name="unetr",
                            multiple=PATCH_SIZE)
