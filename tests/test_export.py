"""Tests for tfneuro.export: SavedModel signatures, in-graph preprocessing, plain-TF loading."""

import json
import os
import subprocess
import sys
import textwrap
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf
from skimage import exposure

from tfneuro.errors import InputError
from tfneuro.export import ExportMetadata, export_model, graph, read_metadata
from tfneuro.io import normalize

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def net2d(name, channels=1, k=4, seed=0):
    """Tiny 2D encoder-decoder (one pooling: sizes must be even)."""
    keras.utils.set_random_seed(seed)
    i = keras.Input((None, None, channels))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(i)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.UpSampling2D()(x)
    x = keras.layers.Conv2D(k, 3, padding="same", activation="softmax")(x)
    return keras.Model(i, x, name=name)


def net2d_any(name, channels=1, k=4, seed=0):
    """Tiny 2D conv net without pooling (any size)."""
    keras.utils.set_random_seed(seed)
    i = keras.Input((None, None, channels))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(i)
    x = keras.layers.Conv2D(k, 3, padding="same", activation="softmax")(x)
    return keras.Model(i, x, name=name)


def net3d(name="tiny3d", channels=1, k=3, seed=1):
    keras.utils.set_random_seed(seed)
    i = keras.Input((None, None, None, channels))
    x = keras.layers.Conv3D(4, 3, padding="same", activation="relu")(i)
    x = keras.layers.MaxPooling3D()(x)
    x = keras.layers.UpSampling3D()(x)
    x = keras.layers.Conv3D(k, 3, padding="same", activation="softmax")(x)
    return keras.Model(i, x, name=name)


def phantom(shape, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    vol = np.zeros(shape + (channels,), np.float32)
    sl = tuple(slice(2, s - 2) for s in shape)
    vol[sl] = rng.gamma(2.0, 50.0, size=vol[sl].shape)
    return vol


@pytest.fixture(scope="module")
def views2d(tmp_path_factory):
    models = {"axial": net2d("ax", seed=0), "coronal": net2d("co", seed=1),
              "sagittal": net2d("sa", seed=2)}
    path = str(tmp_path_factory.mktemp("sm") / "views2d")
    # plain Keras models carry no spec: their pooling multiple is given (tfneuro models know it)
    meta = export_model(models, path, view_weights={"axial": 0.4, "coronal": 0.4, "sagittal": 0.2},
                        batch_size=5, multiple=2)
    return models, path, meta, tf.saved_model.load(path)


@pytest.fixture(scope="module")
def vol3d(tmp_path_factory):
    model = net3d()
    path = str(tmp_path_factory.mktemp("sm") / "vol3d")
    meta = export_model(model, path, window=(16, 16, 16), overlap=0.5,
                        label_scheme=["background", "a", "b"], batch_size=2)
    return model, path, meta, tf.saved_model.load(path)


# ------------------------------------------------------------------ in-graph preprocessing
def test_percentile_matches_numpy():
    x = np.random.default_rng(0).normal(size=1001).astype(np.float32)
    got = graph.percentile(tf.constant(x), [0.5, 37.3, 99.5]).numpy()
    np.testing.assert_allclose(got, np.percentile(x, [0.5, 37.3, 99.5]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["zscore", "minmax"])
@pytest.mark.parametrize("mask", [None, "nonzero"])
def test_normalize_matches_io(method, mask):
    vol = phantom((12, 10, 9))[..., 0]
    fn = getattr(normalize, method)
    want = fn(vol, mask=None if mask is None else vol != 0, percentiles=(0.5, 99.5))
    got = graph.normalize_channel(tf.constant(vol), method, (0.5, 99.5), mask).numpy()
    np.testing.assert_allclose(got, want, atol=2e-5)


@pytest.mark.parametrize("masked", [False, True])
def test_histogram_equalize_matches_skimage(masked):
    vol = phantom((14, 12, 10))[..., 0]
    m = vol != 0 if masked else None
    want = exposure.equalize_hist(vol, nbins=256, mask=m)
    got = graph.histogram_equalize(tf.constant(vol), None if m is None else tf.constant(m)).numpy()
    np.testing.assert_allclose(got, want, atol=2e-3)


# ------------------------------------------------------------------ signatures
def test_signatures_and_dtypes(views2d, vol3d):
    for (_, _, meta, loaded) in (views2d, vol3d):
        sig = loaded.signatures["segment_volume"]
        _, kwargs = sig.structured_input_signature
        assert list(kwargs) == ["volume"]
        assert kwargs["volume"].dtype == tf.float32
        assert kwargs["volume"].shape.as_list() == [None, None, None, meta.num_channels]
        out = sig.structured_outputs
        assert out["labels"].dtype == tf.int32 and out["labels"].shape.rank == 3
        assert out["probabilities"].dtype == tf.float32
        assert out["probabilities"].shape.as_list() == [None, None, None, meta.num_classes]
        serve = loaded.signatures["serving_default"]
        assert serve.structured_outputs["probabilities"].dtype == tf.float32
        assert set(loaded.signatures) >= {"serving_default", "segment_volume", "metadata"}
    assert {"serving_axial", "serving_coronal", "serving_sagittal"} <= set(views2d[3].signatures)


def test_metadata_asset_and_attributes(views2d):
    _, path, meta, loaded = views2d
    asset = read_metadata(path)
    assert asset == meta
    assert ExportMetadata.from_json(loaded.metadata_json.numpy().decode()) == asset
    stored = json.loads(loaded.signatures["metadata"]()["json"].numpy())
    assert stored == asset.to_dict()
    with open(os.path.join(path, "assets", "tfneuro.json")) as f:
        assert json.load(f) == stored  # the JSON a plain-TF program reads
    assert stored["conform"]["spacing"] == [1.0, 1.0, 1.0] and "window" not in stored
    assert [n.decode() for n in loaded.label_names.numpy()] == ["background", "CSF", "GM", "WM"]
    assert loaded.label_scheme.numpy() == b"tissue4"
    np.testing.assert_array_equal(loaded.spacing.numpy(), [1.0, 1.0, 1.0])
    assert loaded.orientation.numpy() == b"RAS"
    assert loaded.model_name.numpy() == b"ax"
    import tfneuro

    assert loaded.tfneuro_version.numpy().decode() == tfneuro.__version__
    assert asset.normalization.method == "zscore"
    assert asset.pad_multiple == {"axial": 2, "coronal": 2, "sagittal": 2}
    assert asset.views["sagittal"].axis == 0
    assert asset.views["sagittal"].weight == pytest.approx(0.2)


def test_serving_default_equals_predict(views2d, vol3d):
    models, _, _, loaded = views2d
    x = np.random.default_rng(3).normal(size=(3, 8, 12, 1)).astype(np.float32)
    got = loaded.signatures["serving_default"](tf.constant(x))["probabilities"].numpy()
    np.testing.assert_allclose(got, models["axial"].predict(x, verbose=0), atol=1e-5)
    got = loaded.signatures["serving_sagittal"](tf.constant(x))["probabilities"].numpy()
    np.testing.assert_allclose(got, models["sagittal"].predict(x, verbose=0), atol=1e-5)
    model, _, _, loaded3 = vol3d
    x = np.random.default_rng(4).normal(size=(2, 8, 8, 8, 1)).astype(np.float32)
    got = loaded3.signatures["serving_default"](tf.constant(x))["probabilities"].numpy()
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=1e-5)


# ------------------------------------------------------------------ whole-volume equality
def test_views_equal_inference_predict_volume_views(views2d):
    from tfneuro.inference.slices import predict_volume_views

    models, _, meta, loaded = views2d
    vol = phantom((20, 16, 14))
    out = loaded.signatures["segment_volume"](volume=tf.constant(vol))
    vn = normalize.zscore(vol[..., 0])[..., None]
    ref = predict_volume_views(models, vn, weights={"axial": 0.4, "coronal": 0.4, "sagittal": 0.2})
    np.testing.assert_allclose(out["probabilities"].numpy(), ref, atol=1e-5)
    np.testing.assert_array_equal(out["labels"].numpy(), ref.argmax(-1))


def test_graph_automatic_batch(monkeypatch):
    """graph.predict_slices_in_graph(batch_size=None) feeds AUTO_BATCH_PIXELS // (H*W) of the
    padded slice per call (run eagerly so the calls can be counted); same result as batch 1."""
    from tfneuro.inference import memory

    model = net2d("auto")
    vol = tf.constant(phantom((20, 16, 14)))  # nonzero slices 2..17 along axis 0
    monkeypatch.setattr(memory, "AUTO_BATCH_PIXELS", 3 * 16 * 14)
    sizes = []

    def call(x):
        sizes.append(int(x.shape[0]))
        return model(x, training=False)

    got = graph.predict_slices_in_graph(call, vol, 0, 4, input_kind="channels", multiple=2).numpy()
    assert sizes == [3, 3, 3, 3, 3, 1]
    want = graph.predict_slices_in_graph(call, vol, 0, 4, input_kind="channels", multiple=2,
                                         batch_size=1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_odd_sizes_pad_and_crop_back(views2d):
    """Odd X, Y, Z: the graph pads each slice symmetrically to the model's multiple (2)."""
    from tfneuro.inference.slices import predict_volume_views

    models, _, _, loaded = views2d
    vol = phantom((19, 15, 13))
    out = loaded.signatures["segment_volume"](volume=tf.constant(vol))
    assert out["labels"].shape == (19, 15, 13)
    vn = normalize.zscore(vol[..., 0])
    ref = np.zeros((19, 15, 13, 4), np.float32)
    w = {"axial": 0.4, "coronal": 0.4, "sagittal": 0.2}
    for view, axis in (("sagittal", 0), ("coronal", 1), ("axial", 2)):
        # pad the two in-slice axes by one voxel after (odd -> even; diff 1 -> before 0)
        pad = [(0, 1) if (a != axis and vn.shape[a] % 2) else (0, 0) for a in range(3)]
        p = predict_volume_views({view: models[view]}, np.pad(vn, pad)[..., None])
        ref += w[view] * p[:19, :15, :13]
    np.testing.assert_allclose(out["probabilities"].numpy(), ref, atol=1e-5)


def _numpy_sliding_window(model, vol, window, overlap, sigma_scale=0.125):
    """Independent reference: explicit loops over window positions."""
    k = model.outputs[0].shape[-1]
    shape = np.array(vol.shape[:3])
    win = np.array(window)
    pad_total = np.maximum(win - shape, 0)
    before = pad_total // 2
    v = np.pad(vol, [(b, t - b) for b, t in zip(before, pad_total)] + [(0, 0)])
    g = np.ones(window)
    for a in range(3):
        c = (window[a] - 1) / 2
        d = np.exp(-0.5 * ((np.arange(window[a]) - c) / (sigma_scale * window[a])) ** 2)
        g = g * d.reshape([-1 if b == a else 1 for b in range(3)])
    g /= g.max()
    acc = np.zeros(v.shape[:3] + (k,))
    wsum = np.zeros(v.shape[:3])
    starts = []
    for a in range(3):
        step = int(window[a] * (1 - overlap))
        s = list(range(0, v.shape[a] - window[a] + 1, step))
        if s[-1] != v.shape[a] - window[a]:
            s.append(v.shape[a] - window[a])
        starts.append(s)
    for x0 in starts[0]:
        for y0 in starts[1]:
            for z0 in starts[2]:
                sl = (slice(x0, x0 + window[0]), slice(y0, y0 + window[1]), slice(z0, z0 + window[2]))
                p = model.predict(v[sl][None], verbose=0)[0]
                acc[sl] += p * g[..., None]
                wsum[sl] += g
    out = acc / wsum[..., None]
    return out[before[0]:before[0] + shape[0], before[1]:before[1] + shape[1], before[2]:before[2] + shape[2]]


@pytest.mark.parametrize("shape", [(30, 20, 24), (13, 17, 11)])
def test_sliding_window_matches_reference(vol3d, shape):
    model, _, _, loaded = vol3d
    vol = phantom(shape, seed=5)
    out = loaded.signatures["segment_volume"](volume=tf.constant(vol))
    vn = normalize.zscore(vol[..., 0])[..., None]
    ref = _numpy_sliding_window(model, vn, (16, 16, 16), 0.5)
    np.testing.assert_allclose(out["probabilities"].numpy(), ref, atol=1e-5)
    np.testing.assert_array_equal(out["labels"].numpy(), ref.argmax(-1))


def test_sliding_window_matches_inference(vol3d):
    sw = pytest.importorskip("tfneuro.inference.sliding_window")
    model, _, _, loaded = vol3d
    vol = phantom((30, 20, 24), seed=6)
    out = loaded.signatures["segment_volume"](volume=tf.constant(vol))
    vn = normalize.zscore(vol[..., 0])[..., None]
    ref = sw.sliding_window_predict(model, vn, window=(16, 16, 16), overlap=0.5, skip_empty=False)
    np.testing.assert_allclose(out["probabilities"].numpy(), ref, atol=1e-5)
    np.testing.assert_array_equal(out["labels"].numpy(), np.asarray(ref).argmax(-1))


def test_rgb_slices_histogram_equalised(tmp_path):
    from tfneuro.inference.slices import predict_volume_views

    model = net2d_any("rgbnet", channels=3, seed=7)
    path = str(tmp_path / "rgb")
    meta = export_model(model, path, input_kind="rgb_slices", views=["coronal"])
    assert meta.histogram_equalization == {"nbins": 256}
    assert meta.normalization.method == "none"
    loaded = tf.saved_model.load(path)
    vol = phantom((12, 11, 9), seed=8)
    out = loaded.signatures["segment_volume"](volume=tf.constant(vol))
    vn = exposure.equalize_hist(vol[..., 0], nbins=256)[..., None]
    ref = predict_volume_views({"coronal": model}, vn, input_kind="rgb_slices")
    np.testing.assert_allclose(out["probabilities"].numpy(), ref, atol=2e-3)


def test_two_arm_model(tmp_path):
    from tfneuro.inference.slices import predict_volume_views

    keras.utils.set_random_seed(9)
    t1, t2 = keras.Input((None, None, 1), name="t1"), keras.Input((None, None, 1), name="t2")
    x = keras.layers.Concatenate()([keras.layers.Conv2D(3, 3, padding="same")(t1),
                                    keras.layers.Conv2D(3, 3, padding="same")(t2)])
    model = keras.Model([t1, t2], keras.layers.Conv2D(4, 1, activation="softmax")(x), name="arms")
    path = str(tmp_path / "arms")
    meta = export_model(model, path, normalization={"method": "minmax", "mask": "nonzero"})
    assert meta.input_kind == "two_arm" and meta.modalities == ("t1", "t2")
    loaded = tf.saved_model.load(path)
    _, kw = loaded.signatures["serving_default"].structured_input_signature
    assert set(kw) == {"t1", "t2"}
    vol = phantom((10, 12, 8), channels=2, seed=10)
    out = loaded.signatures["segment_volume"](volume=tf.constant(vol))
    vn = np.stack([normalize.minmax(vol[..., c], mask=vol[..., c] != 0) for c in range(2)], -1)
    ref = predict_volume_views({"axial": model}, vn)
    np.testing.assert_allclose(out["probabilities"].numpy(), ref, atol=1e-5)


def test_bad_arguments_write_nothing(tmp_path):
    path = tmp_path / "bad"
    with pytest.raises(InputError, match="label_scheme"):
        export_model(net2d_any("m", k=3), path)  # tissue4 has 4 classes
    with pytest.raises(InputError, match="views"):
        export_model({"upward": net2d_any("m")}, path)
    with pytest.raises(InputError, match="window"):
        export_model(net3d(), path, window=(15, 16, 16), label_scheme=["a", "b", "c"], multiple=2)
    from tfneuro.models import get

    unet = get("unet3d", base_filters=2, depth=3)  # its spec knows the multiple: 4
    with pytest.raises(InputError, match=r"window: \(12, 12, 10\) is not a multiple of 4"):
        export_model(unet, path, window=(12, 12, 10), label_scheme="neurocranium")
    assert not path.exists() and os.listdir(tmp_path) == []


# ------------------------------------------------------------------ serving
def test_eight_threads_agree_with_sequential(vol3d):
    _, _, _, loaded = vol3d
    fn = loaded.signatures["segment_volume"]
    vols = [phantom((18 + i % 3, 16, 17), seed=20 + i) for i in range(8)]
    seq = [fn(volume=tf.constant(v))["probabilities"].numpy() for v in vols]
    results = [None] * 8
    errors = []
    barrier = threading.Barrier(8)

    def work(i):
        try:
            barrier.wait()
            results[i] = fn(volume=tf.constant(vols[i]))["probabilities"].numpy()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for a, b in zip(seq, results):
        np.testing.assert_array_equal(a, b)


PLAIN_TF = textwrap.dedent("""
    import importlib.abc, json, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "tfneuro" or name.startswith("tfneuro."):
                raise ImportError("tfneuro is blocked in this process")
    sys.meta_path.insert(0, Block())
    try:
        import tfneuro  # noqa
        print("TFNEURO_IMPORTED"); sys.exit(3)
    except ImportError:
        pass
    import numpy as np, tensorflow as tf
    loaded = tf.saved_model.load(sys.argv[1])
    meta = json.loads(loaded.metadata_json.numpy())
    vol = np.load(sys.argv[2])
    out = loaded.signatures["segment_volume"](volume=tf.constant(vol))
    np.save(sys.argv[3], out["labels"].numpy())
    print("MODEL", meta["model_name"], "tfneuro" in sys.modules)
""")


def test_plain_tensorflow_subprocess(views2d, tmp_path):
    from tfneuro.inference.slices import predict_volume_views

    models, path, _, _ = views2d
    vol = phantom((16, 14, 12), seed=30)
    np.save(tmp_path / "vol.npy", vol)
    script = tmp_path / "plain.py"
    script.write_text(PLAIN_TF)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    res = subprocess.run([sys.executable, str(script), path, str(tmp_path / "vol.npy"),
                          str(tmp_path / "labels.npy")], cwd=str(tmp_path), env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "MODEL ax False" in res.stdout
    labels = np.load(tmp_path / "labels.npy")
    vn = normalize.zscore(vol[..., 0])[..., None]
    ref = predict_volume_views(models, vn, weights={"axial": 0.4, "coronal": 0.4, "sagittal": 0.2})
    np.testing.assert_array_equal(labels, ref.argmax(-1))


_LOAD_COMPILED = textwrap.dedent("""
    import sys
    from tfneuro.training.saving import load_keras_model
    model = load_keras_model(sys.argv[1])
    print(type(model.loss).__name__, type(model.optimizer).__name__, type(model).__name__)
""")


def test_compiled_tfneuro_model_loads_in_a_fresh_process(tmp_path):
    # A .keras file that holds tfneuro's own loss, optimizer, schedule and a model-module layer
    # (vgg_fcn's ChannelMeanSubtract is registered in tfneuro.models.vgg_fcn, not tfneuro.layers).
    from tfneuro.losses import DiceCELoss
    from tfneuro.models import get
    from tfneuro.training.recipes import SGDL2
    from tfneuro.training.schedules import PolyDecay

    model = get("vgg16_fcn", num_classes=3, input_shape=(32, 32, 3), weights=None,
                drop_coarsest=True)
    model.compile(optimizer=SGDL2(learning_rate=PolyDecay(0.01, max_epochs=3), momentum=0.9,
                                  nesterov=True, l2=1e-4), loss=DiceCELoss())
    path = str(tmp_path / "compiled.keras")
    model.save(path)
    p = subprocess.run([sys.executable, "-c", _LOAD_COMPILED, path], capture_output=True,
                       text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split()[-3:] == ["DiceCELoss", "SGDL2", "RegisteredModel"]
