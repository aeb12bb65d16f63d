"""Latent space to properties and back: regressors from latent codes to homogenized properties, the
predictor folders that hold them, and the search for latent codes with target properties, verified
by the FE solver (``microlatent.properties``).

    labels       read_labelled_split(path, part, split): images and their homogenized labels; phase_settings
    regression   PropertyRegressor (scikit-learn), TorchRegressor (its differentiable copy), features
    closed_loop  decoded_properties(run, codes): codes decoded, thresholded and solved
    predictor    fit_property_models(checkpoint, data, out_dir) -> a predictor folder
    scores       held-out R^2 / MAPE rows, their table and predicted-vs-true figure
    folder       the predictor folder's files; load_predictor(directory) -> PropertyPredictor
    curves       learning curves: error against training-set size and latent size
    search       design(predictor, run, targets), design_span(...): Adam on the latent code, FE-verified
"""

from microlatent.design.folder import PropertyPredictor, load_predictor
from microlatent.design.labels import read_labelled_split
from microlatent.design.predictor import fit_property_models
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
