"""Inputs of the no-extras smoke test in ``.ci/run``: a real T1 scan and a tiny model.

    python .ci/smoke_inputs.py DIR   ->  DIR/t1.nii.gz, DIR/tiny.keras

The scan is the ICBM152 2009 T1 template that nilearn ships in its wheel, resampled to 3 mm
(a real, skull-stripped adult T1). The model is a 1x1x1 Conv3D whose hand-set weights pick the
class whose intensity centre (0, 1/3, 2/3, 1 for background, CSF, GM, WM) is nearest to the
min-max normalised intensity -- tiny, deterministic, and its labels mean something.
"""

import os
import sys

import keras
import nibabel as nib
import numpy as np
from nibabel.processing import resample_to_output
from nilearn import datasets


def main(out):
    os.makedirs(out, exist_ok=True)
    t1 = datasets.load_mni152_template(resolution=1)
    small = resample_to_output(t1, voxel_sizes=3.0, order=1)
    data = np.asarray(small.dataobj, np.float32)
    nib.save(nib.Nifti1Image(data, small.affine), os.path.join(out, "t1.nii.gz"))
    centres, s = np.array([0.0, 1 / 3, 2 / 3, 1.0]), 60.0
    x = keras.Input((None, None, None, 1))
    conv = keras.layers.Conv3D(4, 1, activation="softmax")
    model = keras.Model(x, conv(x), name="smoke_threshold3d")
    conv.set_weights([(2 * s * centres).reshape(1, 1, 1, 1, 4).astype(np.float32),
                      (-s * centres ** 2).astype(np.float32)])
    model.save(os.path.join(out, "tiny.keras"))
    print(f"wrote {out}/t1.nii.gz {data.shape} and {out}/tiny.keras")


if __name__ == "__main__":
    main(sys.argv[1])
