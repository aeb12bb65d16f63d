"""A trained run: the model of a checkpoint and what it was trained with, read once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from microlatent.data.split import Split
from microlatent.device import resolve_device
from microlatent.models.common import VAE
from microlatent.models.registry import load_checkpoint, model_from_checkpoint


@dataclass
class Run:
    """A checkpoint's model (eval mode, on ``device``) with its training config, the data split it was
    trained on (:class:`~microlatent.data.Split`), the image side it was trained at (``trained_size``;
    None: as stored) and its identity (path, SHA-256 of its weights, model name).

    Load with :meth:`Run.load`; every consumer of a trained model (inference, reports, property
    prediction, design) takes a Run instead of re-reading the checkpoint.
    """

    path: Path
    model: VAE
    config: dict
    split: Split
    trained_size: int | None
    state_dict_sha256: str | None
    model_name: str | None

    @classmethod
    def load(cls, checkpoint, device="auto") -> Run:
        path = Path(os.fspath(checkpoint))
        ckpt = load_checkpoint(path)
        model = model_from_checkpoint(ckpt, os.fspath(path)).to(resolve_device(device or "auto")).eval()
        config = (ckpt.get("extra") or {}).get("config") or {}
        return cls(
            path=path,
            model=model,
            config=config,
            split=Split.from_config(config),
            trained_size=(config.get("data") or {}).get("size"),
            state_dict_sha256=ckpt.get("state_dict_sha256"),
            model_name=ckpt.get("model_name"),
        )

    @classmethod
    def of_model(cls, model: VAE) -> Run:
        """A bare model (no checkpoint): no config, the default split, images at their own size."""
        return cls(
            path=Path(""),
            model=model,
            config={},
            split=Split(),
            trained_size=None,
            state_dict_sha256=None,
            model_name=getattr(model, "config", {}).get("name"),
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def data_path(self) -> str | None:
        """The file the run was trained on, as its config names it."""
        return (self.config.get("data") or {}).get("path")

    def identity(self) -> dict:
        """``{"path", "state_dict_sha256", "model"}``: what a predictor records about its model."""
        return {
            "path": os.path.abspath(self.path),
            "state_dict_sha256": self.state_dict_sha256,
            "model": self.model_name,
        }


def as_run(model_or_run) -> Run:
    """A :class:`Run` for either a Run or a bare model."""
    return model_or_run if isinstance(model_or_run, Run) else Run.of_model(model_or_run)
