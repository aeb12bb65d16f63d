"""Latent space to properties and back: regressors from latent codes to homogenized properties, the
predictor folders that hold them, and the search for latent codes with target properties, verified
by the FE solver (``microlatent.properties``).

    regression   PropertyRegressor (scikit-learn), TorchRegressor (its differentiable copy), features
    predictor    fit_property_models(checkpoint, data, out_dir) -> a predictor folder; load_predictor
    search       design(predictor, run, targets), design_span(...): Adam on the latent code, FE-verified
"""

from microlatent.design.predictor import PropertyPredictor, fit_property_models, load_predictor, read_labelled_split
from microlatent.design.regression import PROPERTY_NAMES, PropertyRegressor, TorchRegressor, feature_matrix
from microlatent.design.search import design, design_span, parse_targets

__all__ = [
    "PROPERTY_NAMES",
    "PropertyPredictor",
    "PropertyRegressor",
    "TorchRegressor",
    "design",
    "design_span",
    "feature_matrix",
    "fit_property_models",
    "load_predictor",
    "parse_targets",
    "read_labelled_split",
]
