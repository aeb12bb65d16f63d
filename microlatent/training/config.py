"""Training configs as plain data: YAML or TOML files merged over ``DEFAULTS``, checked on load.

Every key a config may set is in ``DEFAULTS``; an unknown key or a value of the wrong type is an
error naming the file and the key. ``model`` and ``loss`` are free-form mappings checked by the model
registry and ``CompositeLoss``; ``sweep`` (the search space of ``microlatent sweep``) is checked here
by :func:`check_sweep`. Shipped configs live in ``microlatent/configs/`` and can be named without
their path or suffix (``microlatent train cai_mse_cpu``).

A sweep section::

    sweep:
      metric: val_loss          # val_<term>: the mean validation loss (or one term) after a trial's last epoch
      trials: 25                # trials in the study (microlatent sweep --trials)
      epochs: 5                 # epochs per trial (--epochs); the best config keeps optim.epochs
      startup_trials: 5         # random trials before TPE models the space, and before median pruning starts
      warmup_epochs: 1          # epochs every trial completes before it may be pruned
      params:                   # dotted config key -> distribution: float or int {low, high, log, step}, categorical
        optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
        optim.batch_size: {type: categorical, choices: [16, 32, 64]}
        model.width: {type: int, low: 32, high: 96, step: 32}
"""

from __future__ import annotations

import copy
import math
from importlib import resources
from pathlib import Path

import tomllib
import yaml

from microlatent.data.augment import check_augmentations
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
        "num_workers": 0,  # DataLoader worker processes (each opens the HDF5 file itself)
        "cache": None,  # null | memory | disk (or true): keep a resized copy of the images (see training.loop)
        "augment": None,  # null | [roll, dihedral]: random circular shifts, square symmetries (data.augment)
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
        # amp: null or auto = bfloat16 autocast on CUDA only | bf16 = on any device, the CPU included | off.
        # Older configs' true/false mean auto/off; the default is null, not "auto", as a str default would refuse them.
        "amp": None,
        "init_from": None,  # checkpoint whose model weights start this run (finetuning)
        "log_every": 10,  # steps between rows of steps.csv
        "max_steps_per_epoch": None,  # cap for quick runs
        "checkpoint_every_s": 120.0,  # also checkpoint mid-epoch this often (seconds), not only at epoch ends
    },
    "sweep": None,  # search space of `microlatent sweep` (see above); ignored by `microlatent train`
}

_FREE_FORM = {"model", "loss", "data.generate", "sweep"}

SWEEP_DEFAULTS = {"metric": "val_loss", "trials": 25, "epochs": 5, "startup_trials": 5, "warmup_epochs": 1}
SWEEP_TYPES = {
    "float": {"low", "high", "log", "step"},
    "int": {"low", "high", "log", "step"},
    "categorical": {"choices"},
}


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
        raise DataError(
            f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {' '.join(str(err).split())}"
        ) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise DataError(f"{path}: a config must be a mapping of keys to values")
    config = merge(DEFAULTS, raw, origin=str(path))
    for item in overrides:
        config = apply_override(config, item)
    check_values(config, origin=str(path))
    check_sweep(config, origin=str(path))
    return config


def _number(config, dotted, origin, minimum, strict=False, integer=False, optional=False):
    value = config
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if value is None and optional:
        return
    kind = "an integer" if integer else "a number"
    ok = (isinstance(value, int) if integer else isinstance(value, (int, float))) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > minimum if strict else value >= minimum)
    if not ok:
        raise InputError(f"{origin}: '{dotted}' must be {kind} {'>' if strict else '>='} {minimum:g}, got {value!r}")


def check_values(config, origin="config"):
    """InputError naming the file and key for a value no run can use: a run name that is a path, a
    non-positive epoch count, batch size or learning rate, a negative or NaN loss weight, ..."""
    name = config.get("name")
    if not isinstance(name, str) or not name.strip() or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise InputError(f"{origin}: 'name' must be a plain name (it names the run folder runs/<name>), got {name!r}")
    for dotted, minimum, strict, integer, optional in (
        ("optim.epochs", 1, False, True, False),
        ("optim.batch_size", 1, False, True, False),
        ("optim.lr", 0, True, False, False),
        ("optim.weight_decay", 0, False, False, False),
        ("optim.grad_clip", 0, True, False, True),
        ("data.num_workers", 0, False, True, False),
        ("data.size", 1, False, True, True),
        ("schedule.period_epochs", 1, False, True, False),
        ("schedule.min_lr", 0, False, False, False),
        ("train.log_every", 1, False, True, False),
        ("train.max_steps_per_epoch", 1, False, True, True),
        ("train.checkpoint_every_s", 0, True, False, False),
    ):
        _number(config, dotted, origin, minimum, strict, integer, optional)
    check_augmentations((config.get("data") or {}).get("augment"), origin)
    for term, spec in (config.get("loss") or {}).items():
        weight = spec.get("weight", 1.0) if isinstance(spec, dict) else spec
        if not (
            isinstance(weight, (int, float)) and not isinstance(weight, bool) and math.isfinite(weight) and weight >= 0
        ):
            raise InputError(f"{origin}: loss weight '{term}' must be a number >= 0, got {weight!r}")


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
                result[key] = _deep_update(default, value)  # --set loss.msess.crop=5 keeps msess's weight
            else:
                result[key] = copy.deepcopy(value)
        elif isinstance(default, dict):
            if not isinstance(value, dict):
                raise InputError(f"{origin}: '{dotted}' must be a mapping, got {value!r}")
            result[key] = merge(default, value, origin, f"{dotted}.", update_free_form)
        else:
            result[key] = _check_type(value, default, dotted, origin)
    return result


def config_difference(saved, asked, ignore=("train.device", "model.phases")):
    """The first setting two full configs disagree on, as (dotted key, saved value, asked value), or
    None. ``ignore``: keys that may differ (the device; model.phases, which training sets from the
    data). A loss term's or a generator's options count as one value."""

    def flat(tree, prefix=""):
        for key, value in tree.items():
            if isinstance(value, dict) and key not in ("loss", "generate"):
                yield from flat(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    saved_items, asked_items = dict(flat(saved)), dict(flat(asked))
    for key in sorted(set(saved_items) | set(asked_items)):
        if key not in ignore and saved_items.get(key) != asked_items.get(key):
            return key, saved_items.get(key), asked_items.get(key)
    return None


def _deep_update(base: dict, update: dict) -> dict:
    """A copy of ``base`` with ``update``'s keys set, mappings in both merged key by key."""
    result = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(result.get(key), dict) and isinstance(value, dict):
            result[key] = _deep_update(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
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
    overlay: dict = {}
    set_dotted(overlay, dotted.strip(), value)
    return merge(config, overlay, origin=f"--set {item}", update_free_form=True)


def set_dotted(config: dict, dotted: str, value) -> None:
    """Set ``config["a"]["b"]["c"] = value`` for ``dotted`` "a.b.c" in place, making (or replacing
    non-mapping values by) the mappings on the way."""
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
        if not isinstance(node.get(part), dict):  # e.g. data.generate: null
            node[part] = {}
        node = node[part]
    node[leaf] = value


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


def check_sweep(config, origin="config") -> dict | None:
    """The config's sweep section with SWEEP_DEFAULTS filled in (None if it has none); InputError naming
    the file and key for anything a sweep could not run: an unknown key, a parameter that is not a
    config key, a distribution without its bounds, bounds the config key's type cannot take."""
    sweep = config.get("sweep")
    if sweep is None:
        return None
    where = f"{origin}: sweep"
    if not isinstance(sweep, dict):
        raise InputError(f"{where} must be a mapping with params (and metric, trials, epochs), got {sweep!r}")
    unknown = sorted(set(sweep) - {"params", *SWEEP_DEFAULTS})
    if unknown:
        raise InputError(f"{where}: unknown key '{unknown[0]}' (known: params, {', '.join(SWEEP_DEFAULTS)})")
    sweep = {**SWEEP_DEFAULTS, **sweep}
    for key, minimum in (("trials", 0), ("epochs", 1), ("startup_trials", 0), ("warmup_epochs", 0)):
        value = sweep[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise InputError(f"{where}.{key} must be an integer >= {minimum}, got {value!r}")
    terms = ["loss", *(config.get("loss") or {})]
    if sweep["metric"] not in [f"val_{term}" for term in terms]:
        raise InputError(
            f"{where}.metric must be one of {', '.join(f'val_{t}' for t in terms)}, got {sweep['metric']!r}"
        )
    params = sweep.get("params")
    if not isinstance(params, dict) or not params:
        raise InputError(
            f"{where}.params must be a non-empty mapping of config key to distribution, "
            "e.g. {optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}}"
        )
    for key, spec in params.items():
        _check_sweep_param(config, str(key), spec, f"{where}.params.{key}")
    return sweep


def _check_sweep_param(config, key, spec, where):
    if not isinstance(spec, dict) or spec.get("type") not in SWEEP_TYPES:
        raise InputError(f"{where} must be a mapping with type: float, int or categorical, got {spec!r}")
    kind = spec["type"]
    unknown = sorted(set(spec) - SWEEP_TYPES[kind] - {"type"})
    if unknown:
        raise InputError(
            f"{where}: unknown option '{unknown[0]}' for type {kind} (options: {', '.join(sorted(SWEEP_TYPES[kind]))})"
        )
    number = float if kind == "float" else int
    if kind == "categorical":
        choices = spec.get("choices")
        if (
            not isinstance(choices, list)
            or not choices
            or not all(c is None or isinstance(c, (bool, int, float, str)) for c in choices)
        ):
            raise InputError(
                f"{where}.choices must be a non-empty list of numbers, strings, booleans or nulls, got {choices!r}"
            )
        values = choices
    else:
        low, high = spec.get("low"), spec.get("high")
        for name, value in (("low", low), ("high", high), ("step", spec.get("step", 1))):
            if isinstance(value, bool) or not isinstance(value, (int, float) if kind == "float" else int):
                raise InputError(
                    f"{where}.{name} must be {'a number' if kind == 'float' else 'an integer'}, got {value!r}"
                )
        if not low <= high:
            raise InputError(f"{where}: low ({low}) must not exceed high ({high})")
        if spec.get("log", False) not in (True, False):
            raise InputError(f"{where}.log must be true or false, got {spec['log']!r}")
        if spec.get("log") and (low <= 0 or "step" in spec):
            raise InputError(f"{where}: log: true needs low > 0 and no step")
        if "step" in spec and spec["step"] <= 0:
            raise InputError(f"{where}.step must be positive, got {spec['step']!r}")
        values = [number(low), number(high)]
    # the key must name a config value, and every value the sweep may draw must be valid there
    parts = key.split(".")
    if parts[0] in ("sweep", "name") or parts[0] not in DEFAULTS:
        raise InputError(
            f"{where}: '{key}' is not a config key a sweep can vary "
            f"(sections: {', '.join(k for k in DEFAULTS if k not in ('name', 'sweep'))})"
        )
    default, node, dotted = DEFAULTS, config, ""
    for i, part in enumerate(parts):
        dotted = f"{dotted}.{part}" if dotted else part
        if dotted in _FREE_FORM:  # model, loss, data.generate: any key below, but mappings stay mappings
            if i == len(parts) - 1:
                raise InputError(f"{where}: '{key}' is a section; name a key in it (e.g. '{key}.<name>')")
            node = node.get(part) if isinstance(node, dict) else None
            for deeper in parts[i + 1 :]:
                if node is not None and not isinstance(node, dict):
                    raise InputError(
                        f"{where}: '{dotted}' is {node!r} in this config, not a mapping "
                        f"(sweep '{dotted}' itself, or write it as a mapping)"
                    )
                dotted = f"{dotted}.{deeper}"
                node = node.get(deeper) if isinstance(node, dict) else None
            return
        if not isinstance(default, dict) or part not in default:
            raise InputError(f"{where}: '{key}' is not a config key (no '{dotted}')")
        default, node = default[part], node.get(part) if isinstance(node, dict) else None
    if isinstance(default, dict):
        raise InputError(f"{where}: '{key}' is a section; name one of its keys ({', '.join(default)})")
    for value in values:
        _check_type(value, default, key, where)
