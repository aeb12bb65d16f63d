"""Models by name, and checkpoints that rebuild a model on their own.

A checkpoint is ``torch.save`` of a plain dict (readable with ``torch.load(weights_only=True)``):
    {"format": "microlatent-model", "version": 1, "model_name": str, "model_config": dict,
     "state_dict": dict, "state_dict_sha256": str, "provenance": {"weights_source": ..., "pretrained": ...},
     "extra": extra}
The SHA-256 over the state dict's names, dtypes, shapes and bytes catches corrupted tensor data, which
torch.load itself does not notice.
``extra`` must hold only what weights_only loading accepts: tensors, numbers, str, lists, dicts.
"""

import hashlib
import inspect
import os

import torch

from microlatent.errors import DataError, InputError
from microlatent.models.common import FROM_CHECKPOINT
from microlatent.models.resnet_vae import ResnetVAE
from microlatent.models.taesd_vae import TaesdVAE
from microlatent.models.texture_vae import TextureVAE

MODELS = {"taesd_vae": TaesdVAE, "resnet_vae": ResnetVAE, "texture_vae": TextureVAE}
# config keys that only say where initial weights come from; a checkpoint's state dict replaces them
INIT_WEIGHT_KEYS = {"resnet_vae": ("pretrained",), "texture_vae": ("vgg_weights",)}
PROVENANCE = ("weights_source", "pretrained")
FORMAT, VERSION = "microlatent-model", 1


def config_keys(name):
    """The constructor arguments of model `name`, i.e. its valid config keys."""
    return [p for p in inspect.signature(MODELS[name].__init__).parameters if p != "self"]


def build_model(name=None, /, **config):
    """MODELS[name](**config); InputError for an unknown name or config key (listing the valid ones).

    config may carry "name" (as model.config does): build_model(**model.config) rebuilds a model.
    """
    if name is None:
        name = config.get("name")
    if not isinstance(name, str) or name not in MODELS:
        raise InputError(f"unknown model {name!r}; valid: {', '.join(sorted(MODELS))}")
    if config.pop("name", name) != name:
        raise InputError(f"config names model {config.get('name')!r} but build_model was asked for {name!r}")
    valid = config_keys(name)
    unknown = sorted(k for k in config if k not in valid)
    if unknown:
        raise InputError(f"{name}: unknown config key(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    return MODELS[name](**config)


def state_dict_sha256(state_dict):
    """Hex SHA-256 of a state dict: every entry's name, dtype, shape and bytes, in key order."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_model(model, path, extra=None):
    """Write model's name, config, state_dict, weight provenance and `extra` to path (atomically)."""
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or config.get("name") not in MODELS:
        raise InputError(f"save_model: expected a microlatent model with a .config, got {type(model).__name__}")
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "model_name": config["name"],
        "model_config": dict(config),
        "state_dict": state_dict,
        "state_dict_sha256": state_dict_sha256(state_dict),
        "provenance": {k: getattr(model, k) for k in PROVENANCE if hasattr(model, k)},
        "extra": extra,
    }
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _one_line(e):
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def load_checkpoint(path):
    """Read and check a checkpoint written by save_model -> its dict; DataError (one line) otherwise."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"model checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DataError(f"{path} is not a readable model checkpoint ({_one_line(e)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DataError(f"{path} is not a microlatent model checkpoint")
    if ckpt.get("version") != VERSION:
        raise DataError(f"{path}: unsupported checkpoint version {ckpt.get('version')!r} (expected {VERSION})")
    name, config, sd = ckpt.get("model_name"), ckpt.get("model_config"), ckpt.get("state_dict")
    if name not in MODELS:
        raise DataError(f"{path}: unknown model {name!r}; valid: {', '.join(sorted(MODELS))}")
    tensors = isinstance(sd, dict) and all(isinstance(v, torch.Tensor) for v in sd.values())
    if not isinstance(config, dict) or not tensors:
        raise DataError(f"{path}: model_config or state_dict missing")
    if ckpt.get("state_dict_sha256") != state_dict_sha256(sd):
        raise DataError(f"{path}: state_dict checksum mismatch (corrupt or edited file)")
    return ckpt


def load_model(path, map_location="cpu"):
    """Rebuild the model saved at path from the checkpoint alone -> model in eval mode.

    Pretrained-weight files named in its config (resnet_vae's pretrained, texture_vae's vgg_weights)
    are not read again: the weights come from the checkpoint; weights_source / pretrained and
    model.config are restored as saved. DataError (one line naming the file) if anything is wrong.
    """
    path = os.fspath(path)
    return model_from_checkpoint(load_checkpoint(path), path).to(map_location).eval()


def model_from_checkpoint(ckpt, path):
    """The model a checkpoint dict from :func:`load_checkpoint` describes, on the CPU in eval mode
    (``path`` names it in errors)."""
    name, config = ckpt["model_name"], dict(ckpt["model_config"])
    rebuild = {**config, **{k: FROM_CHECKPOINT for k in INIT_WEIGHT_KEYS.get(name, ()) if k in config}}
    try:
        # Built first on the meta device (no memory): a config that does not fit the saved weights
        # (e.g. an edited width of 100000) is refused before anything is allocated.
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in build_model(name, **rebuild).state_dict().items()}
    except InputError as e:
        raise DataError(f"{path}: bad model_config ({e})") from None
    saved_shapes = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items()}
    if shapes != saved_shapes:
        bad = next((k for k in shapes if shapes[k] != saved_shapes.get(k)), None) or next(
            iter(saved_shapes.keys() - shapes.keys())
        )
        raise DataError(
            f"{path}: model_config does not match the saved weights ({bad}: config gives "
            f"{shapes.get(bad)}, weights {saved_shapes.get(bad)})"
        )
    model = build_model(name, **rebuild)
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except Exception as e:
        own, saved = set(model.state_dict()), set(ckpt["state_dict"])
        missing, unexpected = sorted(own - saved), sorted(saved - own)
        detail = (
            f"{len(missing)} missing (e.g. {missing[:1]}), {len(unexpected)} unexpected (e.g. {unexpected[:1]})"
            if missing or unexpected
            else _one_line(e).replace("\t", " ")
        )
        raise DataError(f"{path}: state_dict does not match {name}: {detail}") from None
    for k, v in (ckpt.get("provenance") or {}).items():
        if k in PROVENANCE:
            setattr(model, k, v)
    model.config = config
    return model.eval()
