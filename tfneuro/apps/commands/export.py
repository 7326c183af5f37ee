r"""Export a trained model as a SavedModel that plain TensorFlow can run.

    tfneuro export --model runs/quicknat/best.keras --out saved_models/quicknat \
        --label_scheme tissue4 --spacing 1.0

    tfneuro export --views axial.keras,coronal.keras,sagittal.keras \
        --view_weights 0.4,0.4,0.2 --out saved_models/infinet

    tfneuro export --model runs/unet3d/ckpt.weights.h5 --architecture unet3d \
        --num_classes 4 --out saved_models/unet3d --window 96,96,96

``--model`` is a ``.keras`` file (loaded with ``safe_mode=True`` unless ``--unsafe``) or a
weights checkpoint (``.weights.h5``) for a registry model built with ``--architecture``,
``--num_classes`` and ``--channels``. The SavedModel directory is written atomically; see
``saved_models/README.md`` for its signatures and stored metadata. ``python
experiments/export.py`` takes the same flags.
"""

from __future__ import annotations

import os

from absl import flags

from tfneuro.errors import InputError
from tfneuro.utils.precision import PRECISIONS

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, ".keras file, or a .weights.h5 checkpoint with --architecture.")
flags.DEFINE_list("views", None, "Three per-view .keras files: axial,coronal,sagittal (2D models).")
flags.DEFINE_list("view_names", ["axial", "coronal", "sagittal"], "View of each --views file.")
flags.DEFINE_list("view_weights", None, "Weights of the views (default equal).")
flags.DEFINE_list("slice_views", None, "Single 2D model: views to apply it on (default axial).")
flags.DEFINE_string("out", None, "Output SavedModel directory.")
flags.DEFINE_string("architecture", None, "Registry model name, for a weights checkpoint.")
flags.DEFINE_integer("num_classes", 4, "With --architecture: number of classes.")
flags.DEFINE_integer("channels", 1, "With --architecture: number of input channels.")
flags.DEFINE_string("label_scheme", "tissue4", "Label scheme of the model's classes.")
flags.DEFINE_float("spacing", 1.0, "Conform spacing (mm) the model was trained at.")
flags.DEFINE_string("orientation", "RAS", "Conform orientation.")
flags.DEFINE_string("normalization", None, "zscore | minmax | none (default: zscore; none for "
                    "histogram-equalised models).")
flags.DEFINE_list("percentiles", ["0.5", "99.5"], "Normalisation clipping percentiles.")
flags.DEFINE_string("norm_mask", None, "Normalisation statistics over: all voxels (default) or 'nonzero'.")
flags.DEFINE_string("histogram_equalization", "auto", "auto | on | off (auto: on for vgg16_fcn).")
flags.DEFINE_list("channel_mean", None, "Per-channel means subtracted from model inputs.")
flags.DEFINE_list("window", ["96", "96", "96"], "3D sliding window.")
flags.DEFINE_float("overlap", 0.5, "3D sliding-window overlap.")
flags.DEFINE_integer("batch_size", None, "Slices (2D) or windows (3D) per model call.")
flags.DEFINE_list("modalities", None, "Names of the input channels (default t1 / t1,t2).")
flags.DEFINE_enum("precision", "auto", list(PRECISIONS),
                  "Compute precision of the exported graph: auto = bfloat16 if THIS machine's "
                  "CPU/GPU has it natively, else float32 (stored in the metadata).")
flags.DEFINE_bool("fold_batch_norm", True, "Fold each batch norm into the convolution before it.")
flags.DEFINE_bool("unsafe", False, "Allow .keras files containing arbitrary Python (Lambda layers).")


def _load(path):
    from tfneuro.training.saving import load_keras_model

    if not os.path.exists(path):
        raise InputError(path, "model file not found")
    if path.endswith(".keras"):
        return load_keras_model(path, unsafe=FLAGS.unsafe)
    if path.endswith(".weights.h5") or path.endswith(".h5"):
        if not FLAGS.architecture:
            raise InputError("--architecture", f"needed to build the model for weights file {path}")
        from tfneuro.models import get, spec

        s = spec(FLAGS.architecture, source="--architecture")
        shape = (None,) * s.ndim + (3 if s.input_kind == "rgb_slices" else FLAGS.channels,)
        model = get(FLAGS.architecture, num_classes=FLAGS.num_classes, input_shape=shape)
        try:
            model.load_weights(path)
        except Exception as e:  # noqa: BLE001 - shape mismatches, corrupt files
            raise InputError(path, f"cannot load weights into {FLAGS.architecture} "
                                   f"({type(e).__name__}: {str(e).splitlines()[0]})") from e
        return model
    raise InputError(path, "expected a .keras file or a .weights.h5 checkpoint")


def _floats(values, flag):
    try:
        return [float(v) for v in values]
    except ValueError:
        raise InputError(flag, f"expected numbers, got {values!r}") from None


def main(argv):
    from tfneuro.export import export_model

    if len(argv) > 1:
        raise InputError("command line", f"unexpected arguments {argv[1:]}")
    if not FLAGS.out:
        raise InputError("--out", "is required")
    if bool(FLAGS.model) == bool(FLAGS.views):
        raise InputError("--model", "give exactly one of --model or --views")
    sources = [FLAGS.model] if FLAGS.model else list(FLAGS.views)
    out_real = os.path.realpath(FLAGS.out)
    for s in sources:
        if os.path.realpath(s) == out_real:
            raise InputError("--out", f"{FLAGS.out} would overwrite the input {s}")
    if FLAGS.views:
        if len(FLAGS.views) != len(FLAGS.view_names):
            raise InputError("--views", f"{len(FLAGS.views)} files for views {FLAGS.view_names}")
        model = {v: _load(p) for v, p in zip(FLAGS.view_names, FLAGS.views)}
    else:
        model = _load(FLAGS.model)
    weights = None
    if FLAGS.view_weights:
        names = FLAGS.view_names if FLAGS.views else (FLAGS.slice_views or ["axial"])
        w = _floats(FLAGS.view_weights, "--view_weights")
        if len(w) != len(names):
            raise InputError("--view_weights", f"{len(w)} weights for views {names}")
        weights = dict(zip(names, w))
    hist = {"auto": None, "on": True, "off": False}.get(FLAGS.histogram_equalization, "bad")
    if hist == "bad":
        raise InputError("--histogram_equalization", "must be auto, on or off")
    norm = None
    if FLAGS.normalization or FLAGS.norm_mask or FLAGS.percentiles != ["0.5", "99.5"]:
        norm = {"method": FLAGS.normalization or "zscore", "mask": FLAGS.norm_mask,
                "percentiles": _floats(FLAGS.percentiles, "--percentiles")}
    meta = export_model(
        model, FLAGS.out, label_scheme=FLAGS.label_scheme, spacing=FLAGS.spacing,
        orientation=FLAGS.orientation, normalization=norm, histogram_equalization=hist,
        channel_mean=_floats(FLAGS.channel_mean, "--channel_mean") if FLAGS.channel_mean else None,
        view_weights=weights, views=FLAGS.slice_views,
        window=[int(w) for w in _floats(FLAGS.window, "--window")], overlap=FLAGS.overlap,
        batch_size=FLAGS.batch_size, modalities=FLAGS.modalities, precision=FLAGS.precision,
        fold_batch_norm=FLAGS.fold_batch_norm)
    print(f"wrote {FLAGS.out}: {meta.model_name} ({meta.ndim}D, {meta.num_classes} classes "
          f"{list(meta.label_names or [])}, conform {meta.conform.conform_spacing} mm "
          f"{meta.conform.orientation}, {meta.precision}, {meta.batch_norm_folded} batch norm(s) "
          f"folded)")

