"""What a training run shows so that users catch posterior collapse themselves.

A collapsed VAE reconstructs every input as the same mean image: its decoder ignores z, its encoder
puts q(z|x) on the prior, and its loss looks reasonable. Three numbers expose it (Burda et al. 2016 for
the first):

* KL per unit: KL(q(z|x) || N(0, 1)) of each unit, averaged over inputs (nats). It bounds the
  mutual information between the input and the unit from above, so a unit below 0.1 nats carries
  almost nothing the decoder could use;
* active units: units whose posterior mean varies across inputs, Var_x(E[z|x]) > 0.01 (Burda et
  al.'s criterion), and whose KL exceeds 0.1 nats. The KL condition matters with BatchNorm encoders,
  whose means vary by ~0.1 across inputs even when the unit is unused (KL ~0.01);
* output spread: the standard deviation of each reconstructed pixel across inputs, averaged over
  pixels; 0 for a decoder that draws one image for every input.

A fourth catches a failure that is not collapse: reconstructions that vary with the input but whose
structure is too faint to survive thresholding (every pixel on one side of 0.5, or one phase the
most likely everywhere). A statistics-space lines VAE with clamp weight 150 did this: 2 active
units, output spread 0.044, and an empty image once thresholded.

For a grid latent (N, C, h, w) a "unit" is a channel: its KL is summed over the h x w positions and
it counts as active when the spatial mean of the variances of its means exceeds 0.01 and its KL
exceeds 0.1 nats.
"""

from __future__ import annotations

ACTIVE_VARIANCE = 0.01  # Burda et al.'s threshold on Var_x(E[z|x])
ACTIVE_KL = 0.1  # nats
MIN_IMAGES = 8  # fewer images (a tiny validation split) cannot show variation across inputs
ONE_PHASE_SHARE = 0.5  # warn when more reconstructions than this are a single phase once thresholded


class LatentStatistics:
    """Accumulates mu, logvar and reconstructions batch by batch; ``result()`` gives the diagnostics."""

    def __init__(self):
        self.n = self.one_phase = 0
        self.mu_sum = self.mu_sq = self.kl_sum = self.out_sum = self.out_sq = None

    def add(self, mu, logvar, recon):
        mu, logvar, recon = mu.detach().double(), logvar.detach().double(), recon.detach().double()
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar)
        if mu.ndim == 4:  # grid latent: one unit per channel
            kl = kl.sum((2, 3))
        parts = (mu.sum(0), (mu**2).sum(0), kl.sum(0), recon.sum(0), (recon**2).sum(0))
        if self.mu_sum is None:
            self.mu_sum, self.mu_sq, self.kl_sum, self.out_sum, self.out_sq = parts
        else:
            for total, part in zip((self.mu_sum, self.mu_sq, self.kl_sum, self.out_sum, self.out_sq), parts):
                total += part
        self.n += len(mu)
        self.one_phase += int(single_phase(recon).sum())

    def result(self) -> dict:
        """{"images": int, "active_units": int, "latent_units": int, "output_std": float,
        "kl_per_unit": [float, ...], "one_phase_share": float}."""
        if not self.n:
            return {}
        n = self.n
        mu_var = (self.mu_sq / n - (self.mu_sum / n) ** 2).clamp_min(0)
        if mu_var.ndim == 3:
            mu_var = mu_var.mean((1, 2))
        out_var = (self.out_sq / n - (self.out_sum / n) ** 2).clamp_min(0)
        kl = self.kl_sum / n
        return {
            "images": n,
            "active_units": int(((mu_var > ACTIVE_VARIANCE) & (kl > ACTIVE_KL)).sum()),
            "latent_units": int(mu_var.numel()),
            "output_std": float(out_var.sqrt().mean()),
            "kl_per_unit": [float(v) for v in kl],
            "one_phase_share": self.one_phase / n,
        }


def single_phase(recon):
    """(N,) bool: which reconstructions (N, C, H, W) (or (N, H, W)) are one phase once thresholded:
    phase-1 probability on one side of 0.5 everywhere (C = 1), or the same most likely phase everywhere."""
    if recon.ndim == 3:
        recon = recon[:, None]
    labels = (recon[:, 0] >= 0.5) if recon.shape[1] == 1 else recon.argmax(1)
    flat = labels.flatten(1)
    return (flat == flat[:, :1]).all(1)


def collapse_warning(diagnostics: dict) -> str | None:
    """One line when the diagnostics look like posterior collapse, else None: at most one active
    unit (of more than one), or reconstructions that barely vary across inputs (output std < 0.02);
    or, short of collapse, more than ONE_PHASE_SHARE of the reconstructions a single phase once
    thresholded. Fewer than MIN_IMAGES images say nothing about variation across inputs: None."""
    if not diagnostics or diagnostics["images"] < MIN_IMAGES:
        return None
    active, units, spread = diagnostics["active_units"], diagnostics["latent_units"], diagnostics["output_std"]
    if (units > 1 and active <= 1) or spread < 0.02:
        kl = ", ".join(f"{v:.2g}" for v in diagnostics["kl_per_unit"][:12])
        return (
            f"posterior collapse suspected: {active} of {units} latent units active, reconstructions vary by "
            f"{spread:.3f} across inputs (KL per unit: {kl}); the decoder is ignoring z"
        )
    share = diagnostics.get("one_phase_share", 0.0)
    if share > ONE_PHASE_SHARE:
        return (
            f"{share:.0%} of reconstructions are a single phase once thresholded at 0.5: the decoder's "
            "structure is too faint to survive thresholding"
        )
    return None
