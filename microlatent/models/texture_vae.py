"""TextureVAE (Sardeshmukh, Reddy, Gautham, Bhattacharyya 2021, Sec. 3.3 and Fig. 2).

encoder  frozen pretrained VGG-19 conv layers up to vgg_layer (default pool5: 128 x 128 -> 512 x 4 x 4),
         flattened, LayerNorm, then two trained fully connected heads: fc_mu, fc_logvar -> (N, latent_dim)
decoder  fc (latent_dim -> w x S/16 x S/16) + LeakyReLU(0.3), then four blocks
         [3x3 conv (c -> c/2), nearest upsampling x2, LeakyReLU(0.3)] (w -> w/16 channels,
         S/16 -> S), then 3x3 conv (w/16 -> 1) + sigmoid -> (N, 1, S, S)
The paper gives the four conv / upsample / LeakyReLU(0.3) blocks and 3x3 filters; the FC layer that
starts the decoder, the channel widths (w = decoder_width, halved per block) and the final 1-channel
conv + sigmoid are this implementation's choices. It trains with a Gram (style) loss on pool1-pool4
and conv1_1 instead of pixel reconstruction; the loss lives elsewhere. Latent 64 (the paper tried
8-64), 128 x 128 patches.

The LayerNorm (trained gain and bias) before the heads is also this implementation's: Gatys'
normalised VGG-19 gives pool5 features of mean ~2.5, std ~12 and maxima ~300 on binary 64 x 64
images. Fed raw to the heads, logvar started at up to 22 (KL ~8e7), and under Adam (lr 1e-3) the
KL term kept spiking (4.6e9 at step 7; 2.7e9 as the mean of epoch 4 of texture_vae_cpu, whose
validation loss jumped 33-fold there). Normalised, the heads see unit-scale input whatever
vgg_weights gives.
"""

import torch
import torch.nn as nn

from microlatent.errors import InputError
from microlatent.models.common import (
    FixedSizeVAE,
    as_rgb,
    check_images,
    check_positive_int,
    to_probabilities,
)
from microlatent.models.vgg import CHANNELS, LAYERS, VGG19


def UpBlock(n_in, n_out):
    """(N, n_in, h, w) -> (N, n_out, 2h, 2w): 3x3 conv, nearest upsampling, LeakyReLU(0.3)."""
    return nn.Sequential(nn.Conv2d(n_in, n_out, 3, padding=1), nn.Upsample(scale_factor=2), nn.LeakyReLU(0.3))


class TextureVAE(FixedSizeVAE):
    """VGG-19-encoder VAE: (N, 1, S, S) images in [0, 1], S = image_size (128); with ``phases`` K > 2,
    phase probabilities (N, K, S, S) (one-hot in, drawn in the figures' phase colours for the VGG;
    softmax out).

    encode(x) -> mu, logvar, each (N, latent_dim); decode(z) -> (N, 1 or K, S, S) in (0, 1).
    The VGG is frozen (no gradients to its weights); only fc_mu, fc_logvar and the decoder train.
    vgg_weights / vgg_pooling: see microlatent.models.vgg.VGG19; weights_source says which weights.
    """

    name = "texture_vae"

    def __init__(
        self,
        latent_dim=64,
        image_size=128,
        vgg_layer="pool5",
        vgg_pooling="max",
        vgg_weights="auto",
        decoder_width=512,
        phases=2,
    ):
        super().__init__()
        check_positive_int(self.name, latent_dim=latent_dim, image_size=image_size, decoder_width=decoder_width)
        if vgg_layer not in LAYERS:
            raise InputError(f"{self.name}: unknown vgg_layer {vgg_layer!r}; valid: {', '.join(LAYERS)}")
        n_pools = sum(n.startswith("pool") for n in LAYERS[: LAYERS.index(vgg_layer) + 1])
        if image_size % 16 or image_size % 2**n_pools:
            raise InputError(f"{self.name}: image_size {image_size} must be divisible by 16 and by 2**{n_pools}")
        if decoder_width % 16:
            raise InputError(f"{self.name}: decoder_width must be divisible by 16, got {decoder_width}")
        self.config = dict(
            name=self.name,
            latent_dim=latent_dim,
            image_size=image_size,
            vgg_layer=vgg_layer,
            vgg_pooling=vgg_pooling,
            vgg_weights=vgg_weights if isinstance(vgg_weights, str) else str(vgg_weights),
            decoder_width=decoder_width,
        )
        channels = self.set_phases(phases)
        self.latent_dim, self.image_size, self.vgg_layer = latent_dim, image_size, vgg_layer

        self.vgg = VGG19(weights=vgg_weights, pooling=vgg_pooling, last_layer=vgg_layer)
        n_features = CHANNELS[vgg_layer] * (image_size // 2**n_pools) ** 2
        self.feature_norm = nn.LayerNorm(n_features)  # see the module docstring
        self.fc_mu = nn.Linear(n_features, latent_dim)
        self.fc_logvar = nn.Linear(n_features, latent_dim)

        w, s = decoder_width, image_size // 16
        self.fc = nn.Sequential(nn.Linear(latent_dim, w * s * s), nn.LeakyReLU(0.3), nn.Unflatten(1, (w, s, s)))
        self.blocks = nn.Sequential(
            UpBlock(w, w // 2), UpBlock(w // 2, w // 4), UpBlock(w // 4, w // 8), UpBlock(w // 8, w // 16)
        )
        self.conv_out = nn.Conv2d(w // 16, channels, 3, padding=1)

    def output_layer(self):
        return self.conv_out

    @property
    def weights_source(self):
        """Where the frozen VGG-19 weights came from (see VGG19.weights_source)."""
        return self.vgg.weights_source

    @weights_source.setter
    def weights_source(self, value):
        self.vgg.weights_source = value

    def encode(self, x):
        check_images(x, self.name, channels=(self.channels,), size=self.image_size)
        h = self.feature_norm(self.vgg(as_rgb(x), [self.vgg_layer])[self.vgg_layer].flatten(1))
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z):
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != self.latent_dim:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise InputError(f"{self.name}: decode expects latents (N, {self.latent_dim}), got {shape}")
        return to_probabilities(self.conv_out(self.blocks(self.fc(z))))
