"""Training configs as plain data: YAML or TOML files merged over ``DEFAULTS``, checked on load.

Every key a config may set is in ``DEFAULTS``; an unknown key or a value of the wrong type is an
error naming the file and the key. ``model`` and ``loss`` are free-form mappings checked by the model
registry and ``CompositeLoss``. Shipped configs live in ``microlatent/configs/`` and can be named
without their path or suffix (``microlatent train cai_mse_cpu``).
"""

from __future__ import annotations

import copy
import tomllib
from importlib import resources
from pathlib import Path

import yaml

from microlatent.errors import DataError, InputError

DEFAULTS = {
    "name": "run",
    "seed": 0,
    "data": {
        "path": None,  # HDF5 file in the MICRO2D layout
        "classes": None,  # list of groups; None = all
        "size": None,  # resize images to size x size (Cai et al.: 224); None = as stored
        "split_seed": 0,
        "split_fractions": [0.8, 0.1, 0.1],
        "generate": None,  # {kind, n, size, seed}: make data.path first if it does not exist
        "num_workers": 0,
    },
    "model": {"name": "taesd_vae"},
    "loss": {"mse": 1.0, "kl": 1.0e-4},
    "optim": {
        "name": "radam",  # radam | adam | adamw
        "lr": 1.0e-3,
        "weight_decay": 0.0,
        "batch_size": 32,
        "epochs": 30,
        "grad_clip": None,
    },
    "schedule": {
        "name": "cosine_warm_restarts",  # cosine_warm_restarts | constant
        "period_epochs": 10,  # Cai et al. section 3.4
        "min_lr": 0.0,
    },
    "train": {
        "device": "auto",  # auto | cpu | cuda | cuda:N | mps
        "amp": True,  # bfloat16 autocast on CUDA; ignored on CPU
        "init_from": None,  # checkpoint whose model weights start this run (finetuning)
        "log_every": 10,  # steps between rows of steps.csv
        "max_steps_per_epoch": None,  # cap for quick runs
    },
}

_FREE_FORM = {"model", "loss", "data.generate"}


def load_config(source, overrides=()) -> dict:
    """Config from a file path or a shipped config's name, merged over DEFAULTS, with ``overrides``
    ("key.sub=value", value parsed as YAML) applied last. Returns a new nested dict."""
    path = resolve_config_path(source)
    try:
        text = path.read_text()
        raw = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read config: {err}") from None
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as err:
        raise DataError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {' '.join(str(err).split())}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise DataError(f"{path}: a config must be a mapping of keys to values")
    config = merge(DEFAULTS, raw, origin=str(path))
    for item in overrides:
        config = apply_override(config, item)
    return config


def resolve_config_path(source) -> Path:
    """A path as given, else a shipped config of that name (with or without .yaml)."""
    path = Path(source)
    if path.is_file():
        return path
    shipped = resources.files("microlatent") / "configs"
    for candidate in (str(source), f"{source}.yaml", f"{source}.toml"):
        if (shipped / candidate).is_file():
            return Path(str(shipped / candidate))
    names = sorted(p.name.rsplit(".", 1)[0] for p in shipped.iterdir() if p.name.endswith((".yaml", ".toml")))
    raise DataError(f"{source}: no such config file, and no shipped config of that name (shipped: {', '.join(names)})")


def shipped_configs() -> list[str]:
    """Names of the configs that ship with microlatent."""
    shipped = resources.files("microlatent") / "configs"
    return sorted(p.name.rsplit(".", 1)[0] for p in shipped.iterdir() if p.name.endswith((".yaml", ".toml")))


def merge(defaults, given, origin="config", prefix="", update_free_form=False):
    """defaults updated by given, recursively; unknown keys and wrong types raise InputError.

    Free-form sections (model, loss, data.generate) are replaced whole by a file, so a config's loss
    is exactly the terms it lists, but updated key by key by an override (``--set loss.kl=0.01``).
    """
    result = copy.deepcopy(defaults)
    for key, value in given.items():
        dotted = f"{prefix}{key}"
        if key not in defaults:
            raise InputError(f"{origin}: unknown key '{dotted}' (known here: {', '.join(defaults)})")
        default = defaults[key]
        if dotted in _FREE_FORM:
            if value is not None and not isinstance(value, dict):
                raise InputError(f"{origin}: '{dotted}' must be a mapping, got {value!r}")
            if update_free_form and isinstance(default, dict) and value is not None:
                result[key] = {**default, **copy.deepcopy(value)}
            else:
                result[key] = copy.deepcopy(value)
        elif isinstance(default, dict):
            if not isinstance(value, dict):
                raise InputError(f"{origin}: '{dotted}' must be a mapping, got {value!r}")
            result[key] = merge(default, value, origin, f"{dotted}.", update_free_form)
        else:
            result[key] = _check_type(value, default, dotted, origin)
    return result


def apply_override(config, item):
    """config with one "a.b.c=value" override applied (value parsed as YAML, so 1e-3, true, [1, 2] work)."""
    if "=" not in item:
        raise InputError(f"--set expects key=value, got {item!r}")
    dotted, text = item.split("=", 1)
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:  # YAML 1.1 reads 1e-3 (no dot) as a string
            value = float(value)
        except ValueError:
            pass
    for key in reversed(dotted.strip().split(".")):
        value = {key: value}
    return merge(config, value, origin=f"--set {item}", update_free_form=True)


def _check_type(value, default, dotted, origin):
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise InputError(f"{origin}: '{dotted}' must be {type(default).__name__}, got {value!r}")
    return value
