"""Paper 002's residual 3D U-Net with deep supervision, and AgeU-Net (segmentation + age).

Paper 002 ("Pipeline Design") modifies U-Net in three ways: 3D kernels and strides, residual
connections within the convolution blocks, and deep supervision ("outputs from deeper layers
with a lower resolution ... compared with downsampled versions of the ground truth ... we did
not add undersampled output near the bottleneck layer"). Its published code
(github.com/richterleo/neonatal_brain_segmentation) is MONAI's ``DynUNet(res_block=True)``;
we copy its layout:

- levels: an input block (stride 1), ``depth - 2`` strided residual down blocks and a strided
  residual bottleneck; ``filters = min(base_filters * 2**level, max_filters)`` (32, 64, 128,
  256, 320 for the default depth 5 — the repository's "small" configuration with three
  downsample blocks);
- residual blocks with instance norm and LeakyReLU(0.01) (:class:`ResidualBlock3D`);
- decoder: 2x2x2 transposed conv to the level's filters, concatenation, residual block;
- 1x1x1 heads; softmax probabilities (the DynUNet returns logits; our losses take
  probabilities, and mixed precision keeps the softmax in float32).

Deep supervision: heads at every decoder level except the one next to the bottleneck (paper
002 text; the published code also put one there — ``num_deep_supervision=depth-2`` reproduces
that). 10 classes by default: the dHCP's 8 tissues plus its inner and outer background
classes (paper 002 "Dataset"). Inputs: T1 and T2 as two channels.

Training vs inference outputs (the Keras 3 design):
    The builders return a :class:`DeepSupervisionModel`, a small ``keras.Model`` subclass that
    wraps a functional network with every head as an output. ``model(x, training=True)``
    returns the list ``[full, 1/2, 1/4, ...]`` (full resolution first — the
    ``DeepSupervisionLoss`` contract); ``model(x)`` / ``model.predict`` (training False)
    return only the full-resolution tensor, so the sliding window, export and evaluation see
    an ordinary segmentation model. ``fit`` works because the class overrides
    ``compute_loss`` (a list of predictions goes to the compiled loss as a whole, which must
    be a ``tfneuro.losses.DeepSupervisionLoss``) and ``compute_metrics`` (metrics see the
    full-resolution output only). ``model.inference_model()`` returns a plain functional
    model with only the inference outputs, sharing weights (for Grad-CAM or tools that need
    ``model.inputs``). Both survive a ``.keras`` round trip.

AgeU-Net (paper 002, "we extended the pipeline aiming to perform age prediction and semantic
segmentation simultaneously"): the same network plus an age-regression head on the
bottleneck. The outputs are a dict ``{"segmentation": ..., "age": [B, 1]}``. The published
head is conv3x3x3(512, valid) -> PReLU -> conv3x3x3(1024, valid) -> PReLU -> flatten -> linear
-> PReLU, which fixes the input size; we use global average pooling -> Dense(512) -> PReLU ->
Dense(1024) -> PReLU -> Dense(1) (linear) so spatial sizes may vary (departure). The age unit is
whatever the targets are (months in the issue; dHCP ages are weeks). Loss = segmentation loss
+ λ·MSE(age) with λ = 0.01 (the repository's ``age_loss_weight: 10e-3``; the paper gives no
value): compile with ``loss={"segmentation": DeepSupervisionLoss(...), "age": "mse"},
loss_weights={"segmentation": 1.0, "age": AGE_LOSS_WEIGHT}`` and ``y = {"segmentation":
labels, "age": ages}``.
"""

from __future__ import annotations

import keras

from tfneuro.errors import InputError
from tfneuro.layers.residual import ResidualBlock3D, UNetDecoderBlock3D
from tfneuro.models._common import (
    check_input_shape,
    check_num_classes,
    check_positive,
    classifier_head,
)
from tfneuro.models.unet3d import check_spatial_multiple

#: λ of the age MSE term (paper 002 code: Hyperparams ``age_loss_weight = 10e-3``).
AGE_LOSS_WEIGHT = 0.01


def _is_list(x):
    return isinstance(x, (list, tuple))


@keras.saving.register_keras_serializable(package="tfneuro")
class DeepSupervisionModel(keras.Model):
    """Wraps a functional network whose outputs are ``[seg_full, seg_low_1, ..., (age)]``.

    Returns, with ``training=True`` and deep supervision on, the segmentation as a list (full
    resolution first); otherwise only the full-resolution segmentation. With an age head the
    result is ``{"segmentation": ..., "age": ...}``.

    Args:
        network: functional ``keras.Model`` with outputs ``[full, low..., age?]``.
        num_deep_supervision: number of low-resolution segmentation outputs in ``network``.
        has_age: whether the last output of ``network`` is the age.
        registry_name, multiple: the registered builder that made it and the spatial multiple
            of its inputs (:func:`tfneuro.models.spec_of`).
    """

    def __init__(self, network, num_deep_supervision=0, has_age=False, registry_name=None,
                 multiple=1, **kwargs):
        super().__init__(**kwargs)
        self.registry_name = registry_name
        self.multiple = int(multiple)
        self.network = network
        self.num_deep_supervision = int(num_deep_supervision)
        self.has_age = bool(has_age)
        self._user_loss_weights = None
        self.built = True  # the wrapped functional network is built

    # -- structure --------------------------------------------------------------------------
    def _pack(self, outputs, training):
        outputs = list(outputs) if _is_list(outputs) else [outputs]
        n_seg = 1 + self.num_deep_supervision
        seg = outputs[:n_seg]
        seg = seg if (training and self.num_deep_supervision) else seg[0]
        if self.has_age:
            return {"segmentation": seg, "age": outputs[n_seg]}
        return seg

    def call(self, inputs, training=None):
        return self._pack(self.network(inputs, training=training), bool(training))

    def compute_output_spec(self, inputs, training=None):
        return self._pack(self.network.compute_output_spec(inputs), bool(training))

    def build(self, input_shape=None):
        self.built = True

    def inference_model(self):
        """A functional model (same weights) returning what ``model(x)`` returns."""
        outs = self.network.outputs
        n_seg = 1 + self.num_deep_supervision
        out = {"segmentation": outs[0], "age": outs[n_seg]} if self.has_age else outs[0]
        return keras.Model(self.network.inputs, out, name=f"{self.name}_inference")

    @property
    def inputs(self):
        return self.network.inputs

    # -- training -----------------------------------------------------------------------------
    def compile(self, *args, **kwargs):
        self._user_loss_weights = kwargs.get("loss_weights")
        return super().compile(*args, **kwargs)

    def get_compile_config(self):
        return super().get_compile_config()

    def compile_from_config(self, config):
        return super().compile_from_config(config)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        seg = y_pred["segmentation"] if isinstance(y_pred, dict) else y_pred
        if not _is_list(seg) and not self.has_age:
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        if self.loss is None:
            raise InputError("compile(loss)", "no loss given to compile()")
        losses = self.loss if isinstance(self.loss, dict) else {"segmentation": self.loss}
        weights = self._user_loss_weights or {}
        preds = y_pred if isinstance(y_pred, dict) else {"segmentation": y_pred}
        targets = y if isinstance(y, dict) else {"segmentation": y}
        total = 0.0
        for key, loss in losses.items():
            if key not in preds or key not in targets:
                raise InputError("compile(loss)", f"no output/target named {key!r}; outputs are "
                                                  f"{sorted(preds)}, targets {sorted(targets)}")
            sw = sample_weight.get(key) if isinstance(sample_weight, dict) else (
                sample_weight if key == "segmentation" else None)
            value = self._apply_loss(key, loss, targets[key], preds[key], sw)
            total = total + float(weights.get(key, 1.0)) * value
        for extra in self.losses:
            total = total + self._aggregate_additional_loss(extra)
        return total

    def _apply_loss(self, key, loss, y_true, y_pred, sample_weight):
        if _is_list(y_pred):
            from tfneuro.losses.deep_supervision import DeepSupervisionLoss

            if not isinstance(loss, DeepSupervisionLoss):
                raise InputError(
                    "compile(loss)", f"the {key!r} output is deep-supervised (a list in training);"
                    " wrap its loss in tfneuro.losses.DeepSupervisionLoss(loss)")
            return loss(y_true, list(y_pred), sample_weight)
        loss = keras.losses.get(loss)
        value = loss(y_true, y_pred, sample_weight) if isinstance(loss, keras.losses.Loss) \
            else keras.ops.mean(loss(y_true, y_pred))
        return keras.ops.cast(value, "float32")

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, dict):
            y_pred = {k: (v[0] if _is_list(v) else v) for k, v in y_pred.items()}
        elif _is_list(y_pred):
            y_pred = y_pred[0]
        return super().compute_metrics(x, y, y_pred, sample_weight)

    # -- serialisation ------------------------------------------------------------------------
    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "network": keras.saving.serialize_keras_object(self.network),
                "num_deep_supervision": self.num_deep_supervision, "has_age": self.has_age,
                "registry_name": self.registry_name, "multiple": self.multiple}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        network = keras.saving.deserialize_keras_object(config.pop("network"))
        return cls(network, **config)


def _res_unet_network(num_classes, input_shape, base_filters, max_filters, depth,
                      num_deep_supervision, norm, age_hidden, name):
    inputs = keras.Input(shape=input_shape, name="image")
    filters = [min(base_filters * 2 ** level, max_filters) for level in range(depth)]
    x = inputs
    skips = []
    for level, f in enumerate(filters):
        # input block (stride 1), strided down blocks, strided bottleneck (DynUNet layout)
        x = ResidualBlock3D(f, 3, strides=1 if level == 0 else 2, norm=norm,
                            name="bottleneck" if level == depth - 1 else f"enc{level}")(x)
        skips.append(x)
    bottleneck = x
    decoded = {}
    for level in reversed(range(depth - 1)):
        x = UNetDecoderBlock3D(filters[level], up_filters=filters[level], residual=True,
                               norm=norm, activation="leaky_relu", name=f"dec{level}")(
            [x, skips[level]])
        decoded[level] = x
    outputs = [classifier_head(decoded[0], num_classes, ndim=3)]  # "classifier" + softmax
    for level in range(1, 1 + num_deep_supervision):
        outputs.append(keras.layers.Conv3D(num_classes, 1, activation="softmax",
                                           dtype="float32", name=f"ds_head{level}")(decoded[level]))
    if age_hidden is not None:
        a = keras.layers.GlobalAveragePooling3D(name="age_pool")(bottleneck)
        for i, units in enumerate(age_hidden):
            a = keras.layers.Dense(units, name=f"age_dense{i + 1}")(a)
            a = keras.layers.PReLU(name=f"age_prelu{i + 1}")(a)
        outputs.append(keras.layers.Dense(1, dtype="float32", name="age")(a))
    return keras.Model(inputs, outputs, name=f"{name}_network")


def res_unet3d(num_classes=10, input_shape=(None, None, None, 2), base_filters=32,
               max_filters=320, depth=5, deep_supervision=True, num_deep_supervision=None,
               norm="instance", name="res_unet3d", _age_hidden=None):
    """Build paper 002's residual 3D U-Net with deep supervision.

    Args:
        num_classes: output classes; 10 = the dHCP's 8 tissues + 2 background classes.
        input_shape: ``(X, Y, Z, C)``, C=2 for T1 and T2. Known spatial dims must be multiples
            of ``2 ** (depth - 1)`` (no internal padding).
        base_filters: channels of the first level (32, DynUNet).
        max_filters: cap on channels per level (320, DynUNet 3D).
        depth: number of resolution levels including the bottleneck (5 = the published "small"
            configuration: input block, 3 down blocks, bottleneck).
        deep_supervision: return low-resolution outputs in training.
        num_deep_supervision: how many low-resolution outputs; None = all decoder levels except
            the one next to the bottleneck (``depth - 3``, paper 002); at most ``depth - 2``.
        norm: "instance" (DynUNet), "batch" or None.
        name: model name.

    Returns:
        A :class:`DeepSupervisionModel` (see the module docstring for its outputs).
    """
    num_classes = check_num_classes(num_classes, name)
    input_shape = check_input_shape(input_shape, 3, name)
    depth = check_positive(depth, "depth", name)
    if depth < 3:
        raise InputError(f"{name}(depth)", f"must be >= 3, got {depth}")
    check_spatial_multiple(input_shape, 2 ** (depth - 1), flag=f"{name}(input_shape)")
    if not deep_supervision:
        n_ds = 0
    elif num_deep_supervision is None:
        n_ds = depth - 3
    else:
        n_ds = int(num_deep_supervision)
        if not 0 <= n_ds <= depth - 2:
            raise InputError(f"{name}(num_deep_supervision)",
                             f"must be in [0, {depth - 2}] for depth {depth}, got {n_ds}")
    network = _res_unet_network(num_classes, input_shape, int(base_filters), int(max_filters),
                                depth, n_ds, norm, _age_hidden, name)
    return DeepSupervisionModel(network, num_deep_supervision=n_ds,
                                has_age=_age_hidden is not None, name=name,
                                registry_name="res_unet3d" if _age_hidden is None else "age_unet3d",
                                multiple=2 ** (depth - 1))


def age_unet3d(num_classes=10, input_shape=(None, None, None, 2), base_filters=32,
               max_filters=320, depth=5, deep_supervision=True, num_deep_supervision=None,
               norm="instance", age_hidden=(512, 1024), name="age_unet3d"):
    """Build AgeU-Net (paper 002): :func:`res_unet3d` plus an age-regression head.

    The head reads the bottleneck: global average pooling -> Dense+PReLU per ``age_hidden``
    entry -> Dense(1). Outputs ``{"segmentation": ..., "age": [B, 1]}`` (segmentation is a list
    in training with deep supervision). Train with loss weights ``{"segmentation": 1, "age":
    AGE_LOSS_WEIGHT}`` (λ = 0.01).

    Args:
        num_classes, input_shape, base_filters, max_filters, depth, deep_supervision,
            num_deep_supervision, norm: as :func:`res_unet3d`.
        age_hidden: units of the hidden Dense layers of the age head ((512, 1024) after the
            published head's conv widths).
        name: model name.
    """
    return res_unet3d(num_classes, input_shape, base_filters, max_filters, depth,
                      deep_supervision, num_deep_supervision, norm, name,
                      _age_hidden=tuple(int(u) for u in age_hidden))
