"""Reliability audit (issue 9, item 1): every ``experiments/*.py`` entry point rejects bad
input before doing any work.

A table of (script, bad input) pairs. Each pair is one real subprocess run; a pair passes when

* the exit status is non-zero (2: bad input),
* stderr holds exactly ONE line starting with ``error:``, and that line names the file or
  flag (``expect``) and the problem (``problem``, a regular expression),
* there is no traceback (no ``--verbose``),
* nothing was written: the run's output path does not exist afterwards (and no temporary
  ``.tmp`` siblings are left in the output's parent).

``--verbose`` prints a traceback (one run per script family: ``test_verbose_traceback``).

All runs of the table start together in a session fixture (a few at a time), so the whole file
costs about (number of runs x Python/TensorFlow start-up) / parallelism. The bad inputs are
derived from one small synthetic cohort (6 subjects, 4 mm): each bad cohort CSV is the good
one with ONE cell pointing at a bad file.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARALLEL = int(os.environ.get("TFNEURO_TEST_PARALLEL", "4"))

# bad input id -> (cohort column replaced, file maker name, expected problem regex)
FILE_CASES = {
    "missing": ("t1", None, r"not found|does not exist|missing"),
    "truncated": ("t1", "truncated", r"truncat|unreadable|cannot read|not a .*image|corrupt"),
    "not_image": ("t1", "not_image", r"not a .*image|unreadable|cannot read|not a NIfTI"),
    "2d": ("t1", "flat2d", r"2D|3D|dimension|\bshape\b"),
    "4d": ("t1", "vol4d", r"4D|volumes|3D|dimension"),
    "nan_inf": ("t1", "nan", r"NaN|Inf|finite"),
    "all_zero": ("t1", "zero", r"all[- ]zero|zero"),
    "constant": ("t1", "constant", r"same value|constant"),  # issue 16
    "grid_mismatch": ("t2", "shifted", r"grid|shape|affine|differ|disagree"),
    "label_values": ("label", "label_bad", r"label|value|scheme"),
}


# ------------------------------------------------------------------ bad data
def _save(img_data, affine, path, dtype=np.float32):
    nib.save(nib.Nifti1Image(np.asarray(img_data, dtype=dtype), affine), path)


def make_data(root):
    """Good cohort + bad files + one bad cohort CSV per case + tiny models. Returns a dict."""
    from tfneuro.data.synth import make_cohort

    root = os.fspath(root)
    data = os.path.join(root, "data")
    make_cohort(data, 6, ages=(1.0, 6.0, 12.0, 12.0, 60.0, 60.0), spacing=4.0, seed=0,
                show_progress=False)
    good_csv = os.path.join(data, "cohort.csv")
    df = pd.read_csv(good_csv)
    for c in ("t1", "t2", "label", "mask", "skull"):
        if c in df.columns:
            df[c] = [os.path.join(data, p) if isinstance(p, str) and not os.path.isabs(p) else p
                     for p in df[c]]
    t1 = nib.load(df["t1"][0])
    lab = nib.load(df["label"][0])
    bad = os.path.join(root, "bad")
    os.makedirs(bad)
    files = {}
    raw = open(df["t1"][0], "rb").read()
    files["truncated"] = os.path.join(bad, "truncated.nii.gz")
    open(files["truncated"], "wb").write(raw[: len(raw) // 2])
    files["not_image"] = os.path.join(bad, "not_image.nii.gz")
    open(files["not_image"], "w").write("subject,t1\nthis is not an image\n")
    arr = np.asarray(t1.dataobj, np.float32)
    files["flat2d"] = os.path.join(bad, "flat2d.nii.gz")
    _save(arr[:, :, arr.shape[2] // 2], t1.affine, files["flat2d"])
    files["vol4d"] = os.path.join(bad, "vol4d.nii.gz")
    _save(np.stack([arr, arr], -1), t1.affine, files["vol4d"])
    nan = arr.copy()
    nan[arr.shape[0] // 2, arr.shape[1] // 2, arr.shape[2] // 2] = np.nan
    nan[1, 1, 1] = np.inf
    files["nan"] = os.path.join(bad, "nan.nii.gz")
    _save(nan, t1.affine, files["nan"])
    files["zero"] = os.path.join(bad, "zero.nii.gz")
    _save(np.zeros_like(arr), t1.affine, files["zero"])
    files["constant"] = os.path.join(bad, "constant.nii.gz")
    _save(np.full_like(arr, 37.0), t1.affine, files["constant"])
    shifted = t1.affine.copy()
    shifted[:3, 3] += 9.0  # > 2 voxels: beyond any tolerance
    files["shifted"] = os.path.join(bad, "t2_shifted.nii.gz")
    _save(np.asarray(nib.load(df["t2"][0]).dataobj, np.float32), shifted, files["shifted"])
    lb = np.asarray(lab.dataobj).astype(np.int16)
    lb[lb.shape[0] // 2, lb.shape[1] // 2, lb.shape[2] // 2] = 9  # tissue4 has 0..3
    files["label_bad"] = os.path.join(bad, "label_bad.nii.gz")
    _save(lb, lab.affine, files["label_bad"], dtype=np.int16)

    cdir = os.path.join(root, "cohorts")
    os.makedirs(cdir)
    cohorts = {"good": os.path.join(cdir, "good.csv")}
    df.to_csv(cohorts["good"], index=False)
    for case, (col, maker, _) in FILE_CASES.items():
        d = df.copy()
        d.loc[0, col] = files[maker] if maker else os.path.join(bad, "does_not_exist.nii.gz")
        cohorts[case] = os.path.join(cdir, f"{case}.csv")
        d.to_csv(cohorts[case], index=False)
    cohorts["missing_columns"] = os.path.join(cdir, "missing_columns.csv")
    df.drop(columns=["label"]).to_csv(cohorts["missing_columns"], index=False)
    cohorts["duplicate_subjects"] = os.path.join(cdir, "duplicate_subjects.csv")
    d = df.copy()
    d.loc[1, "subject"] = d.loc[0, "subject"]
    d.to_csv(cohorts["duplicate_subjects"], index=False)

    # tiny models: a 3-class 2D .keras (tissue4 has 4 classes), a Lambda .keras, a SavedModel
    import keras

    from tfneuro.export import export_model

    keras.utils.set_random_seed(0)
    i = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(3, 3, padding="same", activation="softmax")(i)
    m3 = keras.Model(i, x, name="tiny3")
    models = {"k3": os.path.join(root, "tiny3.keras")}
    m3.save(models["k3"])
    models["k3_weights"] = os.path.join(root, "tiny3.weights.h5")
    m3.save_weights(models["k3_weights"])
    from tfneuro.models import get

    models["quicknat"] = os.path.join(root, "quicknat_tiny.keras")
    get("quicknat", num_classes=4, input_shape=(None, None, 1), filters=4, depth=2).save(
        models["quicknat"])
    i = keras.Input((None, None, 2))
    y = keras.layers.Lambda(lambda t: t * 2.0)(i)
    y = keras.layers.Conv2D(4, 1, activation="softmax")(y)
    keras.Model(i, y, name="lam").save(os.path.join(root, "lambda.keras"))
    models["lambda"] = os.path.join(root, "lambda.keras")
    i = keras.Input((None, None, 2))
    y = keras.layers.Conv2D(4, 3, padding="same", activation="softmax")(i)
    models["sm2"] = os.path.join(root, "sm_t1t2")
    export_model(keras.Model(i, y, name="tiny_t1t2"), models["sm2"], batch_size=8)
    return {"root": root, "data": data, "df": df, "files": files, "cohorts": cohorts,
            "models": models, "out": os.path.join(root, "out")}


# ------------------------------------------------------------------ the table
def _cohort_case(script, case, extra=(), out_flag="--out", expect=None, problem=None):
    """A cohort-based bad input for a script taking --cohort / --out."""
    def build(d):
        out = os.path.join(d["out"], f"{script}-{case}")
        if case in FILE_CASES:
            col, maker, prob = FILE_CASES[case]
            path = d["files"][maker] if maker else os.path.join(d["root"], "bad",
                                                                "does_not_exist.nii.gz")
            exp = os.path.basename(path)
        elif case == "missing_columns":
            exp, prob = "missing_columns.csv", r"column"
        elif case == "duplicate_subjects":
            exp, prob = "duplicate_subjects.csv", r"duplicate"
        else:
            raise KeyError(case)
        args = ["--cohort", d["cohorts"][case], out_flag, out, *extra]
        return args, out, expect or exp, problem or prob
    return (script, case, build)


def _custom(script, case, argfn, expect, problem):
    def build(d):
        out = os.path.join(d["out"], f"{script}-{case}")
        return argfn(d, out), out, expect(d) if callable(expect) else expect, problem
    return (script, case, build)


TRAIN_SCRIPTS = ["train_quicknat", "train_infinet", "train_vgg_fcn", "train_necnet",
                 "train_neonatal_unet", "train_age_classifier", "label_budget",
                 "transfer_strategies", "finetune_quicknat", "quickstart"]
ALL_SCRIPTS = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(ROOT, "experiments"))
                     if f.endswith(".py") and not f.startswith("_"))


def _over_input(script, flag="--out"):
    """--out pointing at the cohort CSV itself (an input file)."""
    return _custom(script, "overwrite_input",
                   lambda d, out: ["--cohort", d["cohorts"]["good"], flag, d["cohorts"]["good"]],
                   flag, r"input|exists|not a directory|overwrite")


def _unknown_model(script, flag="--model"):
    return _custom(script, "unknown_model",
                   lambda d, out: ["--cohort", d["cohorts"]["good"], "--out", out,
                                   flag, "no_such_net"], flag, r"unknown|no_such_net")


CASES = []
# the most general trainer (T1+T2+label): the inputs the spread below does not give it twice
for c in ["missing", "truncated", "grid_mismatch"]:
    CASES.append(_cohort_case("train_infinet", c))
# each other cohort-based script: a spread of the same inputs (two each)
SPREAD = {
    "train_quicknat": ["truncated", "duplicate_subjects", "constant"],
    "train_vgg_fcn": ["2d", "label_values"],
    "train_necnet": ["not_image", "missing_columns"],
    "train_neonatal_unet": ["4d", "grid_mismatch"],
    "train_age_classifier": ["missing", "nan_inf"],
    "label_budget": ["all_zero", "missing_columns"],
    "transfer_strategies": ["label_values", "duplicate_subjects"],
    "finetune_quicknat": ["not_image", "all_zero"],
}
# the bad files replace T1: the paper-001 scripts default to T2 (paper 001), so give them T1
EXTRA = {"finetune_quicknat": ("--pretrained", "@quicknat", "--modalities", "t1"),
         "train_quicknat": ("--modalities", "t1"),
         # no ImageNet download offline; T1 (its default modality is T2)
         "train_vgg_fcn": ("--weights", "none", "--modality", "t1")}
for script, cases in SPREAD.items():
    for c in cases:
        CASES.append(_cohort_case(script, c, extra=EXTRA.get(script, ())))
for s in ["train_quicknat", "train_age_classifier", "transfer_strategies"]:
    CASES.append(_unknown_model(s))
CASES.append(_unknown_model("train_necnet", "--architecture"))  # paper 000 Table 2's networks
for s in ["train_infinet", "train_neonatal_unet"]:
    CASES.append(_over_input(s))
CASES.append(_custom("evaluate", "overwrite_input",
                     lambda d, out: ["--cohort", d["cohorts"]["good"], "--prediction_column",
                                     "label", "--output", d["cohorts"]["good"]],
                     "--output", r"input|overwrite"))
# quickstart.py makes its own synthetic cohort: its flags
CASES.append(_custom("quickstart", "overwrite_input",
                     lambda d, out: ["--out", d["cohorts"]["good"]],
                     "--out", r"input|exists|not a directory"))
CASES.append(_custom("quickstart", "bad_flag",
                     lambda d, out: ["--out", out, "--modalities", "flair"],
                     "--modalities", r"flair|t1"))

# wrong number of modalities for the model
CASES.append(_custom("train_infinet", "modalities",
                     lambda d, out: ["--cohort", d["cohorts"]["good"], "--out", out,
                                     "--modalities", "t1"], "--modalities", r"2 modalit|modalit"))
CASES.append(_custom("segment", "modalities",
                     lambda d, out: ["--model", d["models"]["sm2"], "--input", d["df"]["t1"][0],
                                     "--output", out + ".nii.gz"],
                     "--input2", r"modalit"))
# label count vs the model's head
CASES.append(_custom("export", "label_count",
                     lambda d, out: ["--model", d["models"]["k3"], "--out", out,
                                     "--label_scheme", "tissue4"],
                     "label_scheme", r"3|4|classes"))
CASES.append(_custom("segment", "label_count",
                     lambda d, out: ["--model", d["models"]["k3"], "--input", d["df"]["t1"][0],
                                     "--output", out + ".nii.gz", "--label_scheme", "tissue4"],
                     "label_scheme", r"classes"))
CASES.append(_custom("transfer_strategies", "label_count",
                     lambda d, out: ["--cohort", d["cohorts"]["good"], "--out", out,
                                     "--pretrained", d["models"]["k3"]],
                     "tiny3.keras", r"classes"))
# segment.py file inputs, unsafe model, overwrite
for case in ("missing", "nan_inf"):
    def _seg(d, out, case=case):
        maker = FILE_CASES[case][1]
        path = d["files"][maker] if maker else os.path.join(d["root"], "bad", "does_not_exist.nii.gz")
        return ["--model", d["models"]["sm2"], "--input", path, "--input2", d["df"]["t2"][0],
                "--output", out + ".nii.gz"]
    CASES.append(_custom("segment", case, _seg,
                         lambda d, case=case: os.path.basename(
                             d["files"][FILE_CASES[case][1]]) if FILE_CASES[case][1] else "does_not_exist",
                         FILE_CASES[case][2]))
CASES.append(_custom("segment", "constant",
                     lambda d, out: ["--model", d["models"]["sm2"], "--input",
                                     d["files"]["constant"], "--input2", d["df"]["t2"][0],
                                     "--output", out + ".nii.gz"],
                     "constant.nii.gz", FILE_CASES["constant"][2]))
CASES.append(_custom("segment", "grid_mismatch",
                     lambda d, out: ["--model", d["models"]["sm2"], "--input", d["df"]["t1"][0],
                                     "--input2", d["files"]["shifted"], "--output", out + ".nii.gz"],
                     "t2_shifted", FILE_CASES["grid_mismatch"][2]))
CASES.append(_custom("segment", "overwrite_input",
                     lambda d, out: ["--model", d["models"]["sm2"], "--input", d["df"]["t1"][0],
                                     "--input2", d["df"]["t2"][0], "--output", d["df"]["t1"][0]],
                     "--output", r"overwrite"))
CASES.append(_custom("segment", "unsafe_lambda",
                     lambda d, out: ["--model", d["models"]["lambda"], "--input", d["df"]["t1"][0],
                                     "--input2", d["df"]["t2"][0], "--output", out + ".nii.gz"],
                     "lambda.keras", r"--unsafe"))
CASES.append(_custom("segment", "duplicate_subjects",
                     lambda d, out: ["--model", d["models"]["sm2"], "--cohort",
                                     d["cohorts"]["duplicate_subjects"], "--output_dir", out],
                     "duplicate_subjects.csv", r"duplicate"))
# export.py
CASES.append(_custom("export", "missing",
                     lambda d, out: ["--model", os.path.join(d["root"], "nope.keras"), "--out", out],
                     "nope.keras", r"not found|does not exist"))
CASES.append(_custom("export", "overwrite_input",
                     lambda d, out: ["--model", d["models"]["k3"], "--out", d["models"]["k3"],
                                     "--label_scheme", "tissue4"],
                     "--out", r"input|overwrite|exists"))
CASES.append(_custom("export", "unsafe_lambda",
                     lambda d, out: ["--model", d["models"]["lambda"], "--out", out],
                     "lambda.keras", r"--unsafe"))
CASES.append(_custom("export", "unknown_model",
                     lambda d, out: ["--model", d["models"]["k3_weights"], "--out", out,
                                     "--architecture", "no_such_net"],
                     "--architecture", r"unknown|no_such_net|not found"))
# evaluate.py
for case in ("missing_columns", "label_values"):
    def _ev(d, out, case=case):
        return ["--cohort", d["cohorts"][case], "--prediction_column", "label",
                "--output", out + ".csv"]
    exp = {"missing_columns": "missing_columns.csv", "duplicate_subjects": "duplicate_subjects.csv",
           "label_values": "label_bad"}[case]
    prob = {"missing_columns": r"column", "duplicate_subjects": r"duplicate",
            "label_values": FILE_CASES["label_values"][2]}[case]
    CASES.append(_custom("evaluate", case, _ev, exp, prob))
# gradcam_age.py
CASES.append(_custom("gradcam_age", "missing",
                     lambda d, out: ["--classifier", os.path.join(d["root"], "no_run"), "--out", out],
                     "no_run", r"not found|does not exist|no "))
# make_synthetic_cohort.py
CASES.append(_custom("make_synthetic_cohort", "overwrite_input",
                     lambda d, out: ["--out", d["cohorts"]["good"], "--subjects", "2"],
                     "--out", r"exists|not a directory|file"))
CASES.append(_custom("make_synthetic_cohort", "bad_flag",
                     lambda d, out: ["--out", out, "--subjects", "2", "--ages", "1,500"],
                     "--ages", r"age|0|60"))


#: (script, case) pairs that fail the audit today; strict, so a fix turns them into errors
#: that ask for the marker's removal. The failure modes: docs/failure_modes.md.
XFAIL = {}  # (script, case) -> reason, for known failures (strict xfail)


def _resolve(args, d):
    return [d["models"][a[1:]] if isinstance(a, str) and a.startswith("@") else a for a in args]


def _run(script, args, verbose=False):
    env = dict(os.environ, TFNEURO_PROGRESS="0", TF_CPP_MIN_LOG_LEVEL="3",
               CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, os.path.join(ROOT, "experiments", f"{script}.py"), *args]
    if verbose:
        cmd.append("--verbose")
    try:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    except subprocess.TimeoutExpired as e:  # did work instead of refusing
        return subprocess.CompletedProcess(cmd, -9, e.stdout or "", f"TIMEOUT {e.stderr or ''}")


@pytest.fixture(scope="session")
def audit(tmp_path_factory):
    d = make_data(tmp_path_factory.mktemp("reliability"))
    os.makedirs(d["out"])
    jobs = {}
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        for script, case, build in CASES:
            args, out, expect, problem = build(d)
            args = _resolve(args, d)
            jobs[(script, case)] = (pool.submit(_run, script, args), out, expect, problem, args)
        for script in ("train_quicknat", "segment"):
            args = (["--cohort", d["cohorts"]["nan_inf"], "--out", os.path.join(d["out"], "v"),
                     "--modalities", "t1"]
                    if script == "train_quicknat" else
                    ["--model", d["models"]["sm2"], "--input", d["files"]["nan"], "--input2",
                     d["df"]["t2"][0], "--output", os.path.join(d["out"], "v.nii.gz")])
            jobs[(script, "verbose")] = (pool.submit(_run, script, args, True), None, "", "", args)
        results = {k: (f.result(), *rest) for k, (f, *rest) in jobs.items()}
    return d, results


def _ids():
    return [f"{s}::{c}" for s, c, _ in CASES]


@pytest.mark.parametrize("key", [
    pytest.param((s, c), marks=pytest.mark.xfail(reason=XFAIL[(s, c)], strict=True))
    if (s, c) in XFAIL else (s, c) for s, c, _ in CASES], ids=_ids())
def test_bad_input_rejected(audit, key):
    d, results = audit
    proc, out, expect, problem, args = results[key]
    script, case = key
    report = f"{script} {case}: rc={proc.returncode}\nargs={args}\n{proc.stderr[-1500:]}"
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    print(f"AUDIT {script}::{case} rc={proc.returncode} {errors[0] if errors else '(no error line)'}")
    assert proc.returncode != 0, report
    assert len(errors) == 1, report
    line = errors[0]
    assert expect in line, f"does not name {expect!r}: {line}"
    assert re.search(problem, line, re.I), f"does not state the problem /{problem}/: {line}"
    assert "Traceback" not in proc.stderr, report
    for path in (out, out + ".nii.gz", out + ".csv"):
        assert not os.path.exists(path), f"{script} {case}: left output {path}"
    assert not [f for f in os.listdir(d["out"]) if ".tmp" in f], os.listdir(d["out"])
    assert proc.returncode == 2, report  # InputError, not an unexpected exception (1)


def test_inputs_untouched(audit):
    """No run modified or removed an input (the overwrite cases point outputs at them)."""
    d, results = audit
    for p in list(d["cohorts"].values()) + [d["models"]["k3"]] + list(d["df"]["t1"]):
        assert os.path.isfile(p), p
    assert pd.read_csv(d["cohorts"]["good"]).shape[0] == 6


def test_verbose_traceback(audit):
    _, results = audit
    for script in ("train_quicknat", "segment"):
        proc = results[(script, "verbose")][0]
        assert proc.returncode == 2, proc.stderr[-1500:]
        assert "Traceback (most recent call last)" in proc.stderr
        assert sum(ln.startswith("error:") for ln in proc.stderr.splitlines()) == 1


def test_table_covers_every_script_and_bad_input():
    scripts = {s for s, _, _ in CASES}
    assert set(ALL_SCRIPTS) <= scripts, sorted(set(ALL_SCRIPTS) - scripts)
    cases = {c for _, c, _ in CASES}
    want = set(FILE_CASES) | {"missing_columns", "duplicate_subjects", "unknown_model",
                              "modalities", "label_count", "overwrite_input"}
    assert want <= cases, sorted(want - cases)
