"""Generation in latent space: a learned prior over a VAE's latent grids (conditional flow matching),
sampled by class and by target property, and measured for realism against real images.

    fit_prior(checkpoint, data, out_dir, properties=("Ex",))  ->  Prior   (prior.flow, prior.fit)
    Prior.load(folder).sample(n, class_name=..., targets={...})          latent codes
    generate(run, prior, n, ...)                                          images
    evaluate_prior(run, prior, data)                                      realism, targeted generation
"""

from microlatent.prior.evaluate import evaluate_prior, write_evaluation
from microlatent.prior.fit import Prior, fit_prior, generate
from microlatent.prior.flow import LatentFlow, flow_matching_loss

__all__ = ["LatentFlow", "Prior", "evaluate_prior", "fit_prior", "flow_matching_loss", "generate", "write_evaluation"]
