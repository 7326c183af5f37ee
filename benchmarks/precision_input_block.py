"""Why bfloat16 keeps a model's input block in float32 (issue 17; ``docs/precision.md``).

Trains the accuracy guard's model (``tests/test_precision.py``: an 8-filter, depth-2 QuickNAT
on the axial slices, T1 + T2, of the two training subjects of a 4-subject synthetic cohort at
3 mm, Adam 1e-2, 30 epochs, seed 0) and compares, on every subject, the labels of the float32
model with those of:

* ``all bfloat16``: every layer but the float32 softmax in bfloat16 (Keras ``mixed_bfloat16``);
* ``input block float32``: what ``tfneuro.inference.model_at_precision`` does (the layers from
  the input up to the first kernel, here the first dense block, stay float32);
* ``float32, input rounded``: the float32 model fed the normalised input rounded to bfloat16
  (the error of the input cast alone).

Agreement is over brain voxels (reference label > 0); Dice is the mean over CSF, GM and WM.
Last line: ``agreement input block float32: X`` (lowest over the held-out subjects).

    python benchmarks/precision_input_block.py          # ~2 min on 2 quiet cores
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import fmt, load_average, table  # noqa: E402

import numpy as np  # noqa: E402


def mean_dice(a, b):
    """Mean Dice of CSF, GM and WM (tissue4 classes 1, 2, 3)."""
    return float(np.mean([2.0 * np.sum((a == k) & (b == k))
                          / max(np.sum(a == k) + np.sum(b == k), 1) for k in (1, 2, 3)]))


def train(rows, data, epochs, seed):
    import keras

    from tfneuro.data.pipeline import fit_shape
    from tfneuro.data.slices import label_slices, volume_to_slices
    from tfneuro.models.quicknat import quicknat

    # the same slices as tests/test_precision.py's ``trained`` fixture
    subjects = [data[r["subject"]] for r in rows if r["split"] == "train"]
    size = -(-max(max(x.shape[:3]) for x, _, _ in subjects) // 8) * 8
    subjects = [fit_shape(*s, pad_to=(size,) * 3) for s in subjects]
    xs = np.concatenate([volume_to_slices(x, "axial") for x, _, _ in subjects])
    ys = np.concatenate([label_slices(y, "axial") for _, y, _ in subjects])
    keep = ys.reshape(len(ys), -1).max(1) > 0
    keras.utils.set_random_seed(seed)
    model = quicknat(4, input_shape=(None, None, 2), filters=8, kernel_size=3, depth=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    model.fit(xs[keep], ys[keep], batch_size=8, epochs=epochs, verbose=0)
    return model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import keras
    import ml_dtypes

    from tfneuro.data.cohort import read_cohort
    from tfneuro.data.pipeline import load_subject
    from tfneuro.data.synth import make_cohort
    from tfneuro.inference import predict_volume_views
    from tfneuro.inference.precision import model_at_precision
    from tfneuro.training.saving import copy_model

    out = tempfile.mkdtemp(prefix="precision_input_block_")
    make_cohort(out, 4, ages=(1.0, 4.0, 9.0, 18.0), spacing=3.0, seed=0, show_progress=False)
    rows = read_cohort(os.path.join(out, "cohort.csv")).to_dict("records")
    data = {r["subject"]: load_subject(r, modalities=("t1", "t2"), scheme="tissue4")
            for r in rows}
    model = train(rows, data, args.epochs, args.seed)
    every = copy_model(model)  # every layer but the softmax in bfloat16
    for layer in every._flatten_layers(include_self=False):
        if not isinstance(layer, (keras.layers.InputLayer, keras.layers.Softmax)):
            layer.dtype_policy = "mixed_bfloat16"
    variants = {"all bfloat16": lambda x: (every, x, "bfloat16"),
                "input block float32": lambda x: (model, x, "bfloat16"),
                "float32, input rounded": lambda x: (
                    model, x.astype(ml_dtypes.bfloat16).astype(np.float32), "float32")}
    result, lines = [], []
    for r in rows:
        x, y, _ = data[r["subject"]]
        brain = y > 0
        ref = predict_volume_views({"axial": model}, x, precision="float32").argmax(-1)
        line = [r["subject"], r["split"], fmt(mean_dice(ref, y), 4)]
        for name, make in variants.items():
            m, xin, prec = make(x)
            lab = predict_volume_views({"axial": m}, xin, precision=prec).argmax(-1)
            agree = float(np.mean(lab[brain] == ref[brain]))
            line += [fmt(100 * agree, 2), fmt(mean_dice(lab, y), 4)]
            if name == "input block float32" and r["split"] != "train":
                result.append(agree)
        lines.append(line)
    print()
    print(f"agreement (% brain voxels) with the float32 labels, and mean Dice; load "
          f"{load_average()}; the first block of the copy: "
          f"{model_at_precision(model, 'bfloat16').get_layer('encoder_1').compute_dtype}")
    head = ["subject", "split", "Dice float32"]
    for name in variants:
        head += [f"{name}: agreement %", f"{name}: Dice"]
    print(table(lines, head))
    print(f"agreement input block float32: {min(result):.4f}")


if __name__ == "__main__":
    main()
