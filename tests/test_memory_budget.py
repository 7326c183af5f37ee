"""Tests for tfneuro.inference.memory: budget parsing, cgroup limits, symbolic activation
sizes against hand counts, refusal BEFORE any model call, and the estimate against a measured
RSS peak in a fresh subprocess."""

import json
import math
import os
import subprocess
import sys
import textwrap

import keras
import nibabel as nib
import numpy as np
import psutil
import pytest

from tfneuro.errors import InputError
from tfneuro.inference import memory, predict_slices, predict_volume_views, sliding_window_predict
from tfneuro.inference.memory import MemoryBudgetError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny2d(k=3, channels=1, seed=0):
    keras.utils.set_random_seed(seed)
    i = keras.Input((None, None, channels))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(i)
    x = keras.layers.Conv2D(k, 1, activation="softmax", name="c2")(x)
    return keras.Model(i, x, name="tiny2d")


def tiny3d(k=2):
    keras.utils.set_random_seed(1)
    i = keras.Input((None, None, None, 1))
    x = keras.layers.Conv3D(3, 3, padding="same", activation="relu")(i)
    x = keras.layers.Conv3D(k, 1, activation="softmax")(x)
    return keras.Model(i, x, name="tiny3d")


def counting(model):
    """Count predict_on_batch calls on this instance."""
    calls = []
    orig = model.predict_on_batch

    def wrapped(x):
        calls.append(1)
        return orig(x)

    model.predict_on_batch = wrapped
    return calls


def volume(shape=(12, 10, 8), channels=1):
    rng = np.random.default_rng(0)
    return (rng.random(shape + (channels,)) + 0.1).astype(np.float32)


# ------------------------------------------------------------------ budget parsing
@pytest.mark.parametrize("text,want", [
    ("4GB", 4_000_000_000), ("512MiB", 512 * 2 ** 20), ("2e9", 2_000_000_000),
    ("1.5 GiB", int(1.5 * 2 ** 30)), (123456, 123456), (3e9, 3_000_000_000),
    ("0.5", 500), (0.25, 250), ("80%", 800), ("off", math.inf), ("None", math.inf)])
def test_parse_budget(text, want):
    assert memory.parse_budget(text, available=1000) == want


@pytest.mark.parametrize("bad", ["lots", "4XB", "-1GB", "0", 0, -5, "150%", True, [1]])
def test_parse_budget_rejects(bad):
    with pytest.raises(InputError, match="memory_budget"):
        memory.parse_budget(bad, available=1000)


def test_budget_env_and_argument(monkeypatch):
    monkeypatch.setenv(memory.ENV_VAR, "3MB")
    assert memory.resolve_budget() == 3_000_000
    assert memory.resolve_budget("1KB") == 1000  # the argument wins
    monkeypatch.setenv(memory.ENV_VAR, "nonsense")
    with pytest.raises(InputError, match=memory.ENV_VAR):
        memory.resolve_budget()
    monkeypatch.delenv(memory.ENV_VAR)
    assert memory.resolve_budget(available=1000) == 800  # default 80 %


def test_available_memory_respects_cgroup(tmp_path):
    psutil_avail = psutil.virtual_memory().available
    (tmp_path / "memory.max").write_text("1000000\n")
    (tmp_path / "memory.current").write_text("400000\n")
    assert memory.available_memory(str(tmp_path)) == min(600000, psutil_avail)
    (tmp_path / "memory.max").write_text("max\n")
    got = memory.available_memory(str(tmp_path))
    assert abs(got - psutil.virtual_memory().available) < 0.2 * psutil_avail
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("2000000")
    (v1 / "memory" / "memory.usage_in_bytes").write_text("500000")
    assert memory.available_memory(str(v1)) == 1500000


# ------------------------------------------------------------------ activation sizes
def test_activation_bytes_hand_count():
    m = tiny2d(k=3)
    # batch 2 of 8x8: conv1 2*8*8*4 floats, conv2 2*8*8*3 floats
    want = 4 * (2 * 8 * 8 * 4 + 2 * 8 * 8 * 3)
    assert memory.activation_bytes(m, (2, 8, 8, 1), factor=1.0) == want
    # a nested model counts its layers plus the outer ones
    i = keras.Input((None, None, 1))
    y = keras.layers.Conv2D(5, 1, name="outer")(m(i))
    outer = keras.Model(i, y)
    assert memory.activation_bytes(outer, (2, 8, 8, 1), factor=1.0) == want + 4 * 2 * 8 * 8 * 5
    # two inputs (InfiNet style), and the 3D default factor
    a, b = keras.Input((None, None, 1)), keras.Input((None, None, 1))
    two = keras.Model([a, b], keras.layers.Concatenate()([a, b]))
    assert memory.activation_bytes(two, [(3, 4, 4, 1), (3, 4, 4, 1)], factor=1.0) == 4 * 3 * 4 * 4 * 2
    m3 = tiny3d(k=2)
    assert memory.activation_bytes(m3, (1, 4, 4, 4, 1)) == int(
        memory.ACTIVATION_FACTOR[3] * 4 * 64 * (3 + 2))


def test_estimate_components_by_hand():
    m = tiny2d(k=3)
    shape = (12, 10, 8, 1)
    base = memory.estimate_slices_bytes({2: m}, shape, batch_size=4, num_classes=3,
                                        kinds={2: "channels"})
    vox = 12 * 10 * 8
    act = memory.activation_bytes(m, (4, 12, 10, 1))
    io = 4 * 4 * 12 * 10 * (2 * 1 + 2 * 3)
    assert base == 4 * vox * 3 + max(vox * 2, io + act) + memory.RUNTIME_SLACK
    f64 = memory.estimate_slices_bytes({2: m}, shape, batch_size=4, num_classes=3,
                                       kinds={2: "channels"}, input_dtype=np.float64)
    assert f64 - base == 4 * vox  # the float32 input copy
    unc = memory.estimate_slices_bytes({0: m, 1: m, 2: m}, shape, batch_size=4, num_classes=3,
                                       kinds={0: "channels", 1: "channels", 2: "channels"},
                                       uncertainty=True)
    noun = memory.estimate_slices_bytes({0: m, 1: m, 2: m}, shape, batch_size=4, num_classes=3,
                                        kinds={0: "channels", 1: "channels", 2: "channels"})
    assert unc - noun == 3 * vox + 4 * vox + 8 * vox  # uint8 per view, uncertainty, argmax
    # sliding window: the formula of sliding_window.py plus activations
    m3 = tiny3d(k=2)
    sw = memory.estimate_sliding_window_bytes(m3, (20, 20, 6, 1), (8, 8, 8), batch_size=2,
                                              num_classes=2)
    padded, w = 20 * 20 * 8, 512
    act3 = memory.activation_bytes(m3, (2, 8, 8, 8, 1))
    want = (4 * padded * 3 + 4 * w + 4 * padded * 1
            + max(20 * 20 * 6, 4 * 2 * w * (1 + 4) + 4 * w * 2 + act3) + memory.RUNTIME_SLACK)
    assert sw == want


def test_savedmodel_heuristic_brackets_symbolic():
    """The variables-only heuristic (SavedModel path) stays above the symbolic estimate of
    the same model, within 4x, on QuickNAT."""
    from tfneuro.apps.segment import estimate_segment_bytes
    from tfneuro.export import build_metadata
    from tfneuro.export.options import ExportOptions
    from tfneuro.models import get

    m = get("quicknat", num_classes=4, input_shape=(None, None, 1), filters=16)
    _, meta = build_metadata(m, ExportOptions(batch_size=16, multiple=16))
    sym = estimate_segment_bytes(meta, (128, 128, 96), models={"model": m})
    heur = estimate_segment_bytes(meta, (128, 128, 96), variables=m.weights)
    assert sym < heur < 4 * sym, (sym, heur)


# ------------------------------------------------------------------ refusal before work
def test_slices_refused_before_any_model_call():
    m = tiny2d()
    calls = counting(m)
    vol = volume()
    with pytest.raises(MemoryBudgetError) as e:
        predict_slices(m, vol, "axial", batch_size=4, memory_budget="1KB")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("volume: slice inference on a 12x10x8x1 volume")
    assert "a smaller batch_size (now 4)" in msg and "coarser spacing" in msg
    assert e.value.estimate > e.value.budget == 1000
    assert calls == []
    out = predict_slices(m, vol, "axial", batch_size=4)  # default budget: passes
    assert out.shape == (12, 10, 8, 3) and len(calls) == 2


def test_views_refused_with_view_advice(monkeypatch):
    models = {"axial": tiny2d(seed=0), "coronal": tiny2d(seed=1)}
    calls = [counting(m) for m in models.values()]
    monkeypatch.setenv(memory.ENV_VAR, "2KB")
    with pytest.raises(MemoryBudgetError, match="fewer views at once") as e:
        predict_volume_views(models, volume(), return_uncertainty=True)
    assert memory.ENV_VAR in str(e.value)
    assert calls == [[], []]
    monkeypatch.setenv(memory.ENV_VAR, "off")
    probs, unc = predict_volume_views(models, volume(), return_uncertainty=True)
    assert probs.shape == (12, 10, 8, 3) and all(c for c in calls)


def test_sliding_window_refused_before_any_model_call():
    m = tiny3d()
    calls = counting(m)
    vol = volume((20, 20, 12))
    with pytest.raises(MemoryBudgetError, match=r"a smaller window \(now \(8, 8, 8\)\)"):
        sliding_window_predict(m, vol, window=(8, 8, 8), batch_size=2, memory_budget=0.0000001)
    assert calls == []
    budget = memory.estimate_sliding_window_bytes(m, vol.shape, (8, 8, 8), batch_size=2,
                                                  num_classes=2)
    out = sliding_window_predict(m, vol, window=(8, 8, 8), batch_size=2, memory_budget=budget)
    assert out.shape == (20, 20, 12, 2) and calls


def test_segment_cli_refuses_over_budget(tmp_path):
    """experiments/segment.py: one error line naming the input, exit 2, no output."""
    from tfneuro.export import export_model

    m = tiny2d(k=4)
    model_dir = str(tmp_path / "sm")
    export_model(m, model_dir, batch_size=4)
    img = str(tmp_path / "t1.nii.gz")
    nib.save(nib.Nifti1Image(volume((20, 18, 14))[..., 0], np.eye(4)), img)
    out = tmp_path / "labels.nii.gz"
    env = dict(os.environ, TFNEURO_MEMORY_BUDGET="10MB")
    r = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "segment.py"),
                        "--model", model_dir, "--input", img, "--output", str(out)],
                       capture_output=True, text=True, env=env, timeout=120)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"error: {img}: segmenting a volume conformed")
    assert "TFNEURO_MEMORY_BUDGET" in lines[0] and "Traceback" not in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["sm", "t1.nii.gz"]
    r = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "segment.py"),
                        "--model", model_dir, "--input", img, "--output", str(out),
                        "--memory_budget", "4GB"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert nib.load(str(out)).shape == (20, 18, 14)


# ------------------------------------------------------------------ estimate vs measurement
MEASURE = textwrap.dedent("""
    import json, os, sys, threading, time
    import numpy as np, psutil, keras
    from tfneuro.models import get
    from tfneuro.inference import memory
    keras.utils.set_random_seed(0)
    proc = psutil.Process()
    case = sys.argv[1]
    rng = np.random.default_rng(0)
    if case == "slices":
        from tfneuro.inference import predict_slices
        m = get("quicknat", num_classes=4, input_shape=(None, None, 1), filters=16)
        shape, b = (96, 96, 64, 1), 32
        vol = (rng.random(shape) + 0.1).astype(np.float32)
        est = memory.estimate_slices_bytes({2: m}, shape, batch_size=b, num_classes=4,
                                           kinds={2: "channels"})
        run = lambda: predict_slices(m, vol, 2, batch_size=b, memory_budget="off")
    else:
        from tfneuro.inference import sliding_window_predict
        m = get("unet3d", num_classes=3, input_shape=(None, None, None, 1), base_filters=8)
        shape, w, b = (80, 80, 80, 1), (48, 48, 48), 2
        vol = (rng.random(shape) + 0.1).astype(np.float32)
        est = memory.estimate_sliding_window_bytes(m, shape, w, batch_size=b, num_classes=3)
        run = lambda: sliding_window_predict(m, vol, w, batch_size=b, memory_budget="off")
    import gc; gc.collect(); time.sleep(0.2)
    rss0 = proc.memory_info().rss
    peak, stop = [rss0], [False]
    def sample():
        while not stop[0]:
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.001)
    t = threading.Thread(target=sample); t.start()
    run()
    stop[0] = True; t.join()
    print("RESULT " + json.dumps({"case": case, "estimate": est, "measured": peak[0] - rss0}))
""")


def test_estimate_brackets_measured_rss():
    """First whole-volume call in a fresh process (model built, never called): peak RSS growth
    vs the estimate. Freed blocks go back to the OS (MALLOC_MMAP_THRESHOLD_), so the sampled
    RSS follows the live allocations. Stated factor: measured <= estimate <= 2.5 x measured."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", PYTHONPATH=REPO)
    procs = [subprocess.Popen([sys.executable, "-c", MEASURE, case], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
             for case in ("slices", "window")]
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-3000:]
        res = json.loads(out.split("RESULT ", 1)[1])
        print(f"{res['case']}: estimate {res['estimate'] / 1e6:.1f} MB, "
              f"measured RSS peak growth {res['measured'] / 1e6:.1f} MB, "
              f"ratio {res['estimate'] / res['measured']:.2f}")
        assert res["measured"] <= res["estimate"] <= 2.5 * res["measured"], res
