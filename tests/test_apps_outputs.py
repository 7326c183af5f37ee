"""The volumes table and the QC picture of a segmentation (issue 16), against voxel counts and
volumes computed here by hand.

How these tests were seen to fail: with the rounding in ``label_volumes`` removed, the CSV
text held ``58.544`` and ``0.9990000000000001`` and ``test_volumes_csv_text`` failed; with
class 0 kept, the first row was background; with ``"background"`` taken out of
``NON_BRAIN_WORDS``, ``test_brain_classes_per_scheme`` failed on drawem87 (its extra- and
intra-cranial background counted);
with the side panel dropped from ``qc_figure``, ``test_qc_png_shows_...`` failed on the
missing Description and the 900-pixel width.
"""

import io

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from tfneuro.apps import outputs
from tfneuro.io.labels import get_scheme

TISSUE4 = ["background", "CSF", "GM", "WM"]


def label_image(counts, affine):
    """A 40^3 label image with exactly ``counts[k]`` voxels of class k (k >= 1), rest 0."""
    data = np.zeros(40 ** 3, np.uint8)
    start = 0
    for k, n in enumerate(counts, start=1):
        data[start:start + n] = k
        start += n
    return nib.Nifti1Image(data.reshape(40, 40, 40), affine)


def test_volumes_csv_text(tmp_path):
    # 1 mm^3 voxels: 58544 voxels = 58.544 mL (the issue's float noise case), 999 = 0.999 mL
    img = label_image([999, 58544, 7], np.diag([1.0, 1.0, 1.0, 1.0]))
    table = outputs.label_volumes(img, TISSUE4, subject="s1", age_months=6)
    table.to_csv(tmp_path / "v.csv", index=False)
    assert (tmp_path / "v.csv").read_text().splitlines() == [
        "subject,age_months,label,name,voxels,volume_ml",
        "s1,6.0,1,CSF,999,1.0",
        "s1,6.0,2,GM,58544,58.54",
        "s1,6.0,3,WM,7,0.01",
        "s1,6.0,,total brain,59550,59.55",
    ]


def test_volumes_use_the_voxel_volume_of_the_affine():
    # an oblique affine: columns of length 0.5, 2 and 3 mm -> 3 mm^3 = 0.003 mL per voxel
    r = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    a = np.eye(4)
    a[:3, :3] = r @ np.diag([0.5, 2.0, 3.0])
    table = outputs.label_volumes(label_image([100, 2000, 333], a), TISSUE4)
    assert list(table["name"]) == ["CSF", "GM", "WM", "total brain"]
    assert list(table["voxels"]) == [100, 2000, 333, 2433]
    np.testing.assert_array_equal(table["volume_ml"], [0.3, 6.0, 1.0, 7.3])  # 0.999 -> 1.0
    assert table["age_months"].isna().all() and list(table["subject"]) == [""] * 4


@pytest.mark.parametrize("scheme, not_brain", [
    ("tissue4", []), ("iseg2017", []), ("mrbrains13", []),
    ("neobrains12", []),                  # extracerebral CSF counts, as CSF does in tissue4
    ("drawem9", [4]),                     # 4 = "background (non-brain)"
    ("drawem87", [84, 85]),               # extra- and intra-cranial background
    ("neurocranium", [1]),                # the skull: no brain class, no total row
])
def test_brain_classes_per_scheme(scheme, not_brain):
    names = get_scheme(scheme).names
    assert outputs.brain_classes(names) == [k for k in range(1, len(names)) if k not in not_brain]


def test_no_total_without_brain_classes():
    img = label_image([50], np.eye(4))
    table = outputs.label_volumes(img, get_scheme("neurocranium").names)
    assert list(table["name"]) == ["neurocranium"] and list(table["volume_ml"]) == [0.05]


def test_drawem9_total_leaves_out_non_brain():
    counts = [10 * k for k in range(1, 10)]  # class k has 10k voxels, 1 mm^3
    table = outputs.label_volumes(label_image(counts, np.eye(4)), get_scheme("drawem9").names)
    total = table[table["name"] == outputs.TOTAL]
    assert int(total["voxels"].iloc[0]) == sum(counts) - 40  # class 4 left out
    assert float(total["volume_ml"].iloc[0]) == round((sum(counts) - 40) / 1000, 2)


def test_volume_row_is_one_cohort_row():
    table = outputs.label_volumes(label_image([1000, 2000, 3000], np.eye(4)), TISSUE4,
                                  subject="b", age_months=12.5)
    assert outputs.volume_row(table) == {"subject": "b", "age_months": 12.5, "CSF_ml": 1.0,
                                         "GM_ml": 2.0, "WM_ml": 3.0, "total_brain_ml": 6.0}


def test_qc_png_shows_subject_age_model_and_volumes():
    labels = np.zeros((20, 20, 20), np.int32)
    labels[5:15, 5:15, 5:15] = 2
    labels[8:12, 8:12, 8:12] = 3
    image = labels.astype(np.float32) * 100
    table = outputs.label_volumes(nib.Nifti1Image(labels.astype(np.uint8), np.eye(4)), TISSUE4,
                                  subject="sub-07", age_months=9)
    title = outputs.qc_title("sub-07", 9, "quickstart_quicknat")
    assert title == "sub-07  |  age 9 months  |  model quickstart_quicknat"
    png = Image.open(io.BytesIO(outputs.qc_figure(image, labels, title, TISSUE4, volumes=table)))
    assert png.text["Title"] == title
    wm, gm = 4 ** 3, 10 ** 3 - 4 ** 3  # voxels of 1 mm^3
    assert png.text["Description"] == (
        f"CSF: 0.00 mL; GM: {gm / 1000:.2f} mL; WM: {wm / 1000:.2f} mL; "
        f"total brain: {(gm + wm) / 1000:.2f} mL")
    plain = Image.open(io.BytesIO(outputs.qc_figure(image, labels, title, TISSUE4)))
    assert png.size[0] > plain.size[0]  # the side panel
    assert outputs.qc_title("sub-07", None, "") == "sub-07  |  age not given"
    assert outputs.qc_title("s", float("nan"), "m") == "s  |  age not given  |  model m"
