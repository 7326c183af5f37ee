"""End-to-end tests of the paper-000/003/004 experiment scripts (run as subprocesses).

train_necnet.py, train_age_classifier.py, gradcam_age.py, train_infinet.py, train_vgg_fcn.py:
each runs with tiny flags on a tiny synthetic cohort and its outputs are checked against values
computed here independently (Dice from the written masks, age groups from the ages, channel
means from skimage's equalisation); each rejects bad input with one ``error:`` line, exit 2,
and leaves no output. InfiNet, its U-Net baselines and the VGG16 FCN also have a learning floor
(issue 15, tests/floors.py): a short training run must beat a baseline by a set margin.
"""

import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GROUPS = (12, 18, 24, 36, 48, 60)


def run(script, *args, timeout=600):
    env = dict(os.environ, TFNEURO_PROGRESS="0", TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", script), *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def assert_ok(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]


def assert_one_error(proc, *words):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


def dice(a, b):
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def cohort(synth_cohort_csv):
    df = pd.read_csv(synth_cohort_csv)
    base = os.path.dirname(synth_cohort_csv)
    return synth_cohort_csv, df, base


@pytest.fixture(scope="module")
def age_cohort_csv(tmp_path_factory):
    """28 subjects at 6 mm, 14 at 12 and 14 at 60 months (ages +-1.5), 6 of each held out:
    the two ends of paper 000's age range, for the classifier's learning floor."""
    from tfneuro.data.cohort import write_cohort
    from tfneuro.data.synth import make_cohort

    out = tmp_path_factory.mktemp("age_cohort")
    rng = np.random.default_rng(5)
    ages = np.round(np.minimum(np.repeat([12.0, 60.0], 14) + rng.uniform(-1.5, 1.5, 28), 60.0), 1)
    df = make_cohort(out, 28, ages=ages, spacing=6.0, seed=5, show_progress=False)
    df["split"] = ["test" if i % 14 < 6 else "train" for i in range(28)]
    write_cohort(df, out / "cohort.csv")
    return str(out / "cohort.csv")


# --- NEC-NET ---------------------------------------------------------------------------------

def _skull_pairs(df, base, split):
    """(raw T1 [X,Y,Z,1], skull 0/1) of the cohort's ``split`` subjects, in cohort order."""
    from tfneuro.data.pipeline import load_subject

    return [load_subject({"subject": r["subject"], "t1": os.path.join(base, r["t1"]),
                          "skull": os.path.join(base, r["skull"])}, label="skull",
                         scheme="neurocranium", normalize=None)[:2]
            for r in df[df["split"] == split].to_dict("records")]


def _intensity_baseline_dice(df, base):
    """The intensity baseline fitted (and its decision rule tuned) on the training subjects,
    scored on the (one) test subject by the Dice definition."""
    from tfneuro.evaluation.baselines import fit_intensity_baseline, tune_intensity_baseline

    xs, ys = zip(*_skull_pairs(df, base, "train"))
    fitted = tune_intensity_baseline(fit_intensity_baseline(xs, ys), xs, ys)
    (x, y), = _skull_pairs(df, base, "test")
    return dice(y, fitted.predict(x))


def test_necnet_unet3d_learns_beyond_the_intensity_baseline(cohort, tmp_path):
    """Learning floor (issue 15): NEC-NET's U-Net with post-processing (largest component +
    bridging), trained 200 steps on the 2 training subjects of the 3 mm fixture (24^3
    patches, width x 1/4, depth 3, Adam 3e-3), must beat the intensity baseline (fitted and
    tuned on the same training subjects; Dice 0.69 on the test subject) by 0.10 Dice on the
    held-out subject. Measured: 0.91 and 0.90 (seeds 0 and 1; 36 s of CPU time for the whole
    script, docs/necnet.md). Seen failing: untrained (--learning_rate=1e-9) Dice 0.14; labels
    shuffled inside every training patch Dice 0.00; patches mixed in a buffer of 16 (so a
    batch held one subject) 0.77."""
    csv, df, base = cohort
    out = tmp_path / "floor"
    proc = run("train_necnet.py", f"--cohort={csv}", f"--out={out}", "--epochs=2",
               "--patches_per_volume=100", "--patch_size=24", "--window=24",
               "--width_scale=0.25", "--depth=3", "--learning_rate=3e-3",
               "--baselines=intensity", "--nodistances", "--notensorboard")
    assert_ok(proc)
    row = df[df["split"] == "test"].iloc[0]
    ref = np.asarray(nib.load(os.path.join(base, row["skull"])).dataobj)
    mask = np.asarray(nib.load(out / "unet3d" / "stage1" / "masks"
                               / f"{row['subject']}_necnet.nii.gz").dataobj)
    model_dice = dice(ref, mask)
    baseline = _intensity_baseline_dice(df, base)
    assert model_dice >= baseline + 0.10, (model_dice, baseline)
    res = pd.read_csv(out / "results.csv")
    got = res.set_index("table2")["dice"]
    assert got["NEC-NET (unet3d) + lcc+bridge"] == pytest.approx(model_dice, abs=1e-9)
    assert got["baseline: intensity"] == pytest.approx(baseline, abs=1e-9)


def test_necnet_table2_cascade_end_to_end(cohort, tmp_path):
    """Two Table 2 networks, both cascaded, with the atlas baseline, on one split: the written
    masks are on the input grid and their Dice is the CSV's; stage 2 takes the prior as a
    second channel; table2.csv holds each model's mean of the CSV's rows; the atlas rows
    equal the atlas baseline computed here. Seen failing: with the cascade's prior column
    left off the test subjects, the run stopped with "error: subject synth-002: no prior
    image"; with the raw argmax written as the mask, MASKDICE."""
    from tfneuro.evaluation.baselines import atlas_baseline
    from tfneuro.training.saving import load_keras_model

    csv, df, base = cohort
    out = tmp_path / "necnet"
    proc = run("train_necnet.py", f"--cohort={csv}", f"--out={out}", "--epochs=1",
               "--architecture=unet3d,vnet", "--patch_size=16", "--window=32",
               "--width_scale=0.125", "--depth=2", "--patches_per_volume=2", "--theta=4",
               "--cascade", "--baselines=atlas", "--nodistances", "--notensorboard")
    assert_ok(proc)
    res = pd.read_csv(out / "results.csv")
    test = df[df["split"] == "test"]
    assert set(res["model"]) == {"unet3d", "vnet", "baseline: atlas"}
    nets = res[res["model"] != "baseline: atlas"]
    assert set(zip(nets["model"], nets["stage"], nets["postprocess"])) == {
        (m, s, p) for m in ("unet3d", "vnet") for s in (1, 2) for p in ("none", "lcc+bridge")}
    assert set(res["subject"]) == set(test["subject"])
    names = {"unet3d": "NEC-NET (unet3d)", "vnet": "VNet"}
    for arch in ("unet3d", "vnet"):
        assert load_keras_model(str(out / arch / "stage2" / "model.keras")).inputs[0].shape[-1] == 2
        for stage in (1, 2):
            for _, row in test.iterrows():
                t1 = nib.load(os.path.join(base, row["t1"]))
                mask = nib.load(out / arch / f"stage{stage}" / "masks"
                                / f"{row['subject']}_necnet.nii.gz")
                assert mask.shape == t1.shape
                np.testing.assert_allclose(mask.affine, t1.affine, atol=1e-5)
                m = np.asarray(mask.dataobj)
                ref = np.asarray(nib.load(os.path.join(base, row["skull"])).dataobj)
                label = f"{names[arch]} stage {stage} + lcc+bridge"
                got = res[(res["subject"] == row["subject"]) & (res["table2"] == label)]
                assert got["dice"].item() == pytest.approx(dice(ref, m), abs=1e-9)
    # the atlas baseline from the training subjects, computed here
    xs, ys = zip(*_skull_pairs(df, base, "train"))
    (x, y), = _skull_pairs(df, base, "test")
    atlas = atlas_baseline(xs, ys, x)
    assert res[res["model"] == "baseline: atlas"]["dice"].item() == pytest.approx(dice(y, atlas))
    table2 = pd.read_csv(out / "table2.csv")
    assert list(table2["metric"]) == ["Dice", "precision"]  # --nodistances
    assert list(table2.columns)[1:] == list(dict.fromkeys(res["table2"]))
    for label, rows in res.groupby("table2"):
        assert table2.loc[0, label] == pytest.approx(rows["dice"].mean())
    last = res[res["table2"] == "NEC-NET (unet3d) stage 2 + lcc+bridge"]["dice"].mean()
    assert proc.stdout.strip().splitlines()[-1] == f"mean Dice: {last:.4f}"


def test_necnet_bad_input_leaves_nothing(cohort, tmp_path):
    csv, df, _ = cohort
    out = tmp_path / "o"
    assert_one_error(run("train_necnet.py", f"--cohort={csv}", f"--out={out}",
                         "--architecture=quicknat"), "--architecture", "quicknat")
    assert_one_error(run("train_necnet.py", f"--cohort={csv}", f"--out={out}",
                         "--architecture=resnet3d_9"), "resnet3d_9")
    assert_one_error(run("train_necnet.py", f"--cohort={csv}", f"--out={out}",
                         "--architecture=unet3d,vnet", "--patch_size=24", "--window=32"),
                     "--patch_size", "16")
    assert_one_error(run("train_necnet.py", f"--cohort={csv}", f"--out={out}",
                         "--architecture=unetr", "--patch_size=32", "--window=48"),
                     "--window", "UNETR")
    assert_one_error(run("train_necnet.py", f"--cohort={csv}", f"--out={out}",
                         "--window=20"), "--window")
    assert_one_error(run("train_necnet.py", f"--cohort={csv}", f"--out={out}",
                         "--baselines=oracle"), "--baselines", "oracle")
    # a cohort without the skull column (paths absolute so the copy elsewhere stays valid)
    base = os.path.dirname(csv)
    bad = df.drop(columns=["skull"]).copy()
    for c in ("t1", "t2", "label", "mask"):
        bad[c] = [os.path.join(base, p) for p in bad[c]]
    bad_csv = tmp_path / "noskull.csv"
    bad.to_csv(bad_csv, index=False)
    assert_one_error(run("train_necnet.py", f"--cohort={bad_csv}", f"--out={out}"),
                     str(bad_csv), "skull")
    assert not out.exists()


# --- age classifier and Grad-CAM -------------------------------------------------------------

@pytest.fixture(scope="module")
def age_run(age_cohort_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("age") / "run"
    proc = run("train_age_classifier.py", f"--cohort={age_cohort_csv}", f"--out={out}",
               "--epochs=2", "--steps_per_epoch=40", "--batch_size=4", "--learning_rate=1e-2",
               "--base_filters=4", "--pad_to=32,40,32", "--notensorboard")
    assert_ok(proc)
    return out, proc


def test_age_classifier_learns_12_vs_60_months(age_run, age_cohort_csv):
    """Learning floor (issue 15): resnet3d_50 (width 4, PyTorch BatchNorm statistics), 80
    steps of 4 on 16 subjects, must place at least 10 of the 12 held-out subjects in their
    age group. The easier task -- 12 vs 60 months, the ends of paper 000's range, instead of
    six groups -- keeps the real model, input channels, padding and training loop and
    learns within the 60 s budget; a constant prediction scores 6/12 and a coin 10/12 with
    probability 2 %. (The head-size baseline also gets 12/12 here: this shows learning, not
    skill over head size.) Measured 12/12 with seeds 0 and 1 (43-46 s of CPU time for the
    script). Seen failing: training ages shuffled (8 of 16 groups kept) 5/12, untrained
    (--learning_rate=1e-9) 1/12, Keras' BatchNorm momentum 0.99 6/12 (seeds 0 and 1)."""
    out, proc = age_run
    res = pd.read_csv(out / "results.csv")
    df = pd.read_csv(age_cohort_csv)
    test = df[df["split"] == "test"]
    assert list(res["subject"]) == list(test["subject"])
    want = [min(GROUPS, key=lambda g: (abs(g - a), g)) for a in test["age_months"]]
    assert list(res["true_group_months"]) == want
    probs = res[[f"p_{g}m" for g in GROUPS]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    pred = np.asarray(GROUPS)[probs.argmax(axis=1)]
    assert list(res["predicted_group_months"]) == list(pred)
    correct = int(np.sum(pred == np.asarray(want)))
    assert correct >= 10, (correct, list(pred))
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == f"top-1 accuracy: {correct / 12:.4f}"
    assert lines[-2].startswith("chance (1/6): 0.1667; head-size baseline")
    assert lines[-2].endswith(f"{res['size_baseline_correct'].mean():.4f}")
    assert (out / "model.keras").is_file() and (out / "classifier.json").is_file()


def test_gradcam_age_explains_the_held_out_subjects(age_run, age_cohort_csv, tmp_path):
    """By default only the test split is explained (paper 000 Table 4 on held-out subjects);
    Table 4's F and p are scipy's one-way ANOVA of the per-subject percentiles. Seen failing:
    with the old default --split=all, 28 subjects were explained."""
    from scipy import stats

    out_cls, _ = age_run
    out = tmp_path / "gradcam"
    proc = run("gradcam_age.py", f"--classifier={out_cls}", f"--out={out}")
    assert_ok(proc)
    per = pd.read_csv(out / "gradcam_subjects.csv")
    df = pd.read_csv(age_cohort_csv)
    assert list(per["subject"]) == list(df[df["split"] == "test"]["subject"])
    assert per["in_anova"].all() and sorted(set(per["age_group_months"])) == [12, 60]
    table = pd.read_csv(out / "gradcam_table4.csv")
    assert list(table.columns) == ["Age group", "12m", "60m", "F", "p value"]
    samples = [per[per["age_group_months"] == g]["heatmap_percentile"].to_numpy() for g in (12, 60)]
    with np.errstate(all="ignore"):
        f, p = stats.f_oneway(*samples)
    np.testing.assert_allclose([table["F"][0], table["p value"][0]], [f, p], equal_nan=True)
    assert table["12m"][0].startswith(f"{samples[0].mean():.4f}")
    png = out / "gradcam_mean_by_age.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_age_scripts_bad_input(age_cohort_csv, tmp_path):
    out = tmp_path / "o"
    assert_one_error(run("train_age_classifier.py", f"--cohort={age_cohort_csv}", f"--out={out}",
                         "--model=resnet3d_34"), "--model", "resnet3d_34")
    assert_one_error(run("train_age_classifier.py", f"--cohort={age_cohort_csv}", f"--out={out}",
                         "--model=unet3d"), "--model")
    assert_one_error(run("train_age_classifier.py", f"--out={out}", "--synth_subjects=20"),
                     "--synth_subjects")
    assert_one_error(run("gradcam_age.py", f"--classifier={tmp_path / 'missing'}",
                         f"--cohort={age_cohort_csv}", f"--out={out}"), "--classifier")
    # a skull mask holding a tissue label (2) is not a neurocranium mask
    df = pd.read_csv(age_cohort_csv)
    base = os.path.dirname(age_cohort_csv)
    for c in ("t1", "t2", "label", "mask", "skull"):
        df[c] = [os.path.join(base, p) for p in df[c]]
    df.loc[0, "skull"] = df.loc[0, "label"]
    bad_csv = tmp_path / "tissue_as_skull.csv"
    df.to_csv(bad_csv, index=False)
    assert_one_error(run("train_age_classifier.py", f"--cohort={bad_csv}", f"--out={out}"),
                     df.loc[0, "label"])
    assert not out.exists()


# --- InfiNet / U-Net baselines ---------------------------------------------------------------

#: A floor run (tests/floors.py): one view, 300 SGD steps of batch 8 on the 4 mm isointense
#: cohort, 16 maps per conv, learning rate 0.05 (the paper's 0.01 learns too slowly for a test).
FLOOR_2D = ["--views=axial", "--filters=16", "--learning_rate=0.05", "--epochs=1",
            "--steps_per_epoch=300", "--batch_size=8", "--seed=0", "--notensorboard"]


def test_infinet_learns_past_the_baselines(iso_cohort_csv, tmp_path):
    """Learning floor of InfiNet (paper 003, issue 15) on its paper's phase, isointense (6.5-8.5
    months) T1 + T2: after 300 steps (about 40 s of CPU time) its mean test Dice must reach the
    per-voxel intensity baseline (the best baseline here; GM and WM are nearly isointense but
    not quite) and exceed the atlas of the training label maps by 0.20. Measured 0.755 vs
    intensity 0.711 and atlas 0.439 (docs/papers_002_003_004.md).

    Seen failing: with the training subjects' label files shuffled among them (each image
    trained against another subject's labels, resampled to its grid) the run ended at mean
    Dice 0.504 < atlas 0.433 + 0.20.
    """
    from floors import check_intensity_rows, means

    out = tmp_path / "infinet"
    proc = run("train_infinet.py", f"--cohort={iso_cohort_csv}", f"--out={out}", *FLOOR_2D)
    assert_ok(proc)
    res = pd.read_csv(out / "results.csv")
    check_intensity_rows(res, iso_cohort_csv, ("t1", "t2"))
    m = means(res, method="axial")
    assert m["infinet"] >= m["baseline: intensity"], m.to_dict()
    assert m["infinet"] >= m["baseline: atlas"] + 0.20, m.to_dict()
    assert proc.stdout.strip().splitlines()[-1] == f"mean Dice (axial): {m['infinet']:.4f}"
    assert "skill over the best baseline (intensity)" in proc.stdout


@pytest.mark.parametrize("arms", [1, 2])
def test_unet2d_baselines_learn(iso_cohort_csv, tmp_path, arms):
    """Learning floor of paper 003's U-Net baselines (single arm: T1, T2 stacked as channels;
    double arm: one encoder per modality; median-frequency weighted cross-entropy), depth 3,
    the InfiNet floor's budget: mean test Dice must exceed the atlas baseline by 0.15. They do
    not reach the intensity baseline in 300 steps (2-arm 0.704 vs 0.711; the paper's U-Nets are
    also its weakest models); the floor shows they learn, not that they beat intensity.

    Seen failing: with the training label files shuffled among the training subjects the
    2-arm run ended at 0.371 < atlas 0.433 + 0.15.
    """
    from floors import check_intensity_rows, means

    out = tmp_path / f"unet{arms}"
    proc = run("train_infinet.py", f"--cohort={iso_cohort_csv}", f"--out={out}",
               "--model=unet2d", f"--arms={arms}", "--depth=3", *FLOOR_2D)
    assert_ok(proc)
    res = pd.read_csv(out / "results.csv")
    check_intensity_rows(res, iso_cohort_csv, ("t1", "t2"))
    m = means(res)
    assert m[f"unet2d_{arms}arm"] >= m["baseline: atlas"] + 0.15, m.to_dict()


def test_infinet_views_aggregated(cohort, tmp_path):
    """Two views and their aggregation (paper 003 section 2.2, "aggregated through averaging"):
    the ``aggregated`` rows must be the Dice of the argmax of the mean of the two saved view
    models' probabilities, recomputed here; the per-view rows likewise. Seen failing: with the
    script aggregating by the maximum instead of the mean (``np.max``) the aggregated Dice
    differed from the recomputation."""
    import tfneuro.models  # noqa: F401  (registers the layers)
    from tfneuro.data.pipeline import load_subject
    from tfneuro.inference import predict_slices
    from tfneuro.training.saving import load_keras_model

    csv, df, base = cohort
    out = tmp_path / "infinet"
    proc = run("train_infinet.py", f"--cohort={csv}", f"--out={out}", "--epochs=1",
               "--filters=4", "--steps_per_epoch=2", "--batch_size=4", "--views=axial,coronal",
               "--encoder_convs=1", "--notensorboard")
    assert_ok(proc)
    res = pd.read_csv(out / "results.csv")
    mine = res[res["model"] == "infinet"]
    assert set(mine["method"]) == {"axial", "coronal", "aggregated"}
    assert set(res["model"]) == {"infinet", "baseline: intensity", "baseline: atlas"}
    assert set(res["name"]) == {"CSF", "GM", "WM"}
    test = df[df["split"] == "test"].iloc[0]
    row = {k: (os.path.join(base, v) if k in ("t1", "t2", "label") else v)
           for k, v in test.items()}
    x, y, _ = load_subject(row, modalities=("t1", "t2"), scheme="tissue4")
    probs = {}
    for view in ("axial", "coronal"):
        model = load_keras_model(str(out / view / "model.keras"))
        assert model.get_layer("encoder_1_t1_conv") and not any(
            "conv2" in layer.name for layer in model.layers)  # --encoder_convs=1
        probs[view] = predict_slices(model, x, view)
    probs["aggregated"] = (probs["axial"] + probs["coronal"]) / 2.0
    for method, p in probs.items():
        labels = np.argmax(p, axis=-1)
        rows = mine[(mine["method"] == method) & (mine["subject"] == test["subject"])]
        np.testing.assert_allclose(rows["dice"], [dice(y == k, labels == k) for k in (1, 2, 3)],
                                   atol=1e-6)
        assert (rows["reference_voxels"].to_numpy() == [(y == k).sum() for k in (1, 2, 3)]).all()
    for view in ("axial", "coronal"):
        assert (out / view / "model.keras").is_file()
    assert "mean Dice (aggregated):" in proc.stdout


def test_unet2d_double_arm_bootstrap(cohort, tmp_path):
    csv, _, _ = cohort
    out = tmp_path / "unet"
    proc = run("train_infinet.py", f"--cohort={csv}", f"--out={out}", "--model=unet2d",
               "--arms=2", "--epochs=1", "--filters=4", "--depth=2", "--steps_per_epoch=1",
               "--batch_size=4", "--views=sagittal", "--bootstrap=2", "--notensorboard")
    assert_ok(proc)
    res = pd.read_csv(out / "results.csv")
    mine = res[res["model"] == "unet2d_2arm"]
    assert set(mine["method"]) == {"sagittal"} and set(mine["ensemble"]) == {2}
    assert res.loc[res["model"] != "unet2d_2arm", "ensemble"].isna().all()
    for b in ("b00", "b01"):
        assert (out / f"sagittal_{b}" / "model.keras").is_file()


def test_infinet_bad_input(cohort, tmp_path):
    csv, df, base = cohort
    out = tmp_path / "o"
    assert_one_error(run("train_infinet.py", f"--cohort={csv}", f"--out={out}",
                         "--modalities=t1"), "--modalities", "2")
    assert_one_error(run("train_infinet.py", f"--cohort={csv}", f"--out={out}",
                         "--model=unet2d", "--arms=2", "--modalities=t1"), "--modalities")
    assert_one_error(run("train_infinet.py", f"--cohort={csv}", f"--out={out}",
                         "--views=axial,oblique"), "--views")
    # a missing image file is named
    bad = df.copy()
    for c in ("t1", "t2", "label", "mask", "skull"):
        bad[c] = [os.path.join(base, p) for p in bad[c]]
    missing = os.path.join(base, "nope_T2w.nii.gz")
    bad.loc[0, "t2"] = missing
    bad_csv = tmp_path / "missing.csv"
    bad.to_csv(bad_csv, index=False)
    assert_one_error(run("train_infinet.py", f"--cohort={bad_csv}", f"--out={out}"), missing)
    assert not out.exists()


# --- VGG16 FCN (paper 004) -------------------------------------------------------------------

def test_vgg_fcn_learns_and_stores_the_channel_mean(neonatal_cohort_csv, tmp_path):
    """Paper 004's VGG16 FCN, randomly initialised (``--weights none``: no ImageNet download
    offline), 150 SGD steps of 4 three-slice T2 stacks of 5 neonates at 4 mm (about 50 s of CPU
    time). Floor: mean test Dice at least chance + 0.15, chance being a labelling drawn per
    voxel from the training labels' class frequencies (expected Dice 2pq / (p + q) per class,
    computed here). An untrained network predicts one class nearly everywhere and fails it.

    The floor is against chance, not the intensity or atlas baselines, because a VGG16 trained
    from scratch does not reach them in this budget: 0.354-0.377 after 200-250 steps against
    0.415 (intensity) and 0.403 (atlas) (docs/papers_002_003_004.md); paper 004 starts from
    ImageNet weights.

    Also: the stored channel mean is the mean of the (n-1, n, n+1) axial stacks of the
    histogram-equalised, centre-padded training T2 volumes, computed here from the definition.

    Measured 0.319 (docs/papers_002_003_004.md). Seen failing: with ``--learning_rate=1e-30``
    (an untrained network) mean Dice 0.100 < chance 0.081 + 0.15.
    """
    from skimage import exposure

    from floors import check_intensity_rows, means

    csv = neonatal_cohort_csv
    df, base = pd.read_csv(csv), os.path.dirname(csv)
    out = tmp_path / "vgg"
    proc = run("train_vgg_fcn.py", f"--cohort={csv}", f"--out={out}", "--weights=none",
               "--learning_rate=4e-6", "--epochs=1", "--steps_per_epoch=150", "--batch_size=4",
               "--noaugment", "--seed=0", "--notensorboard")
    assert_ok(proc)
    res = pd.read_csv(out / "results.csv")
    assert set(res.loc[res["model"] == "vgg16_fcn", "postprocess"]) == {"none", "paper004"}
    assert res["hd95_mm"].notna().all() and res["msd_mm"].notna().all()
    check_intensity_rows(res, csv, ("t2",))
    load = lambda p: np.asarray(nib.load(os.path.join(base, p)).dataobj).astype(int)  # noqa: E731
    train = [load(p) for p in df.loc[df["split"] == "train", "label"]]
    q = np.bincount(np.concatenate([t.ravel() for t in train]), minlength=4) / sum(
        t.size for t in train)
    chance = []
    for p in df.loc[df["split"] == "test", "label"]:
        f = np.bincount(load(p).ravel(), minlength=4) / load(p).size
        chance += [2 * f[k] * q[k] / (f[k] + q[k]) for k in (1, 2, 3)]
    m = means(res, postprocess="paper004")
    assert m["vgg16_fcn"] >= np.mean(chance) + 0.15, (m.to_dict(), np.mean(chance))
    # the stored channel mean, from the definition
    shapes = np.array([nib.load(os.path.join(base, p)).shape for p in df["t1"]])
    pad = [int(-(-s // 16) * 16) for s in shapes.max(axis=0)]
    sums, count = np.zeros(3), 0
    for p in df[df["split"] == "train"]["t2"]:
        v = exposure.equalize_hist(np.asarray(nib.load(os.path.join(base, p)).dataobj,
                                              np.float32))
        full = np.zeros(pad)
        lo = [(t - s) // 2 for t, s in zip(pad, v.shape)]
        full[lo[0]:lo[0] + v.shape[0], lo[1]:lo[1] + v.shape[1], lo[2]:lo[2] + v.shape[2]] = v
        total = full.sum()
        sums += [total - full[..., -1].sum(), total, total - full[..., 0].sum()]
        count += full.size
    import keras

    import tfneuro.models.vgg_fcn  # noqa: F401  (registers ChannelMeanSubtract)
    from tfneuro.training.saving import load_keras_model

    model = load_keras_model(str(out / "model.keras"))
    stored = keras.ops.convert_to_numpy(model.get_layer("channel_mean").mean_weight)
    np.testing.assert_allclose(stored, sums / count, rtol=1e-4)
    assert model.get_layer("channel_mean").input_scale == 1.0  # --weights none


def test_vgg_fcn_bad_input(cohort, tmp_path):
    csv, _, _ = cohort
    out = tmp_path / "o"
    assert_one_error(run("train_vgg_fcn.py", f"--cohort={csv}", f"--out={out}",
                         f"--weights={tmp_path / 'vgg.h5'}"), "--weights")
    assert_one_error(run("train_vgg_fcn.py", f"--cohort={csv}", f"--out={out}",
                         "--weights=none", "--mrbrains_grouping"), "--mrbrains_grouping")
    assert_one_error(run("train_vgg_fcn.py", f"--cohort={csv}", f"--out={out}",
                         "--modality=t1,t2"), "--modality")
    assert not out.exists()
