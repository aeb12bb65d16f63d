"""ResNet VAE (Hashemi, Guerzhoy, Paulson 2024; spatial-stats-vae/spatial-stats-vae resnet_vae.py).

encoder  grey (N, 1, H, W) -> repeat to 3 channels -> ImageNet mean/std normalisation
         -> ResNet (bottleneck blocks, layers [3, 8, 36, 3] = ResNet-152) -> global average pool
         -> fc1 (F -> 1024) + BN + ReLU -> fc2 (1024 -> 1024) + BN + ReLU
         -> fc3_mu, fc3_logvar (1024 -> latent_dim = 9)
decoder  fc4 (latent -> 1024) + BN + ReLU -> fc5 (1024 -> 64*s*s) + BN + ReLU -> (N, 64, s, s)
         -> k x [ConvT(c, c', 4, stride 2, padding 1) + BN + ReLU] (s -> 2s -> ... -> s * 2**k >= S)
         -> 3x3 conv (c -> 1) -> sigmoid, centre-cropped to S x S when s * 2**k > S
         (s = S / 2**k between 4 and 7 when S allows: 64 -> 4 x 2**4, 224 -> 7 x 2**5.)
The reference code's decoder stops at 39 x 39 pixels (three unpadded stride-2 ConvTs from 4 x 4)
and resizes bilinearly to S; at 64 px that blurred the 2-3 px lines of Hashemi's data set, and the
statistics of a blurred line cannot match a sharp one. Here every upsampling stage is learned and
the last layer works at full resolution.
(The reference code maps grey to RGB with a learned 1x1 conv; here the channel is repeated, so
pretrained ImageNet filters see a grey RGB image.)
K phases (``phases`` > 2): one-hot input (N, K, S, S) is drawn in the figures' phase colours
(``common.as_rgb``) before the normalisation, and the last conv gives K channels -> softmax.

The ResNet's parameter names are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ...,
``layer1.0.downsample.0``) so a torchvision ``resnet152`` state_dict (.pth) loads into
``model.encoder`` directly; its ``fc.*`` keys are ignored. Without one the model trains from scratch,
warns, and has ``pretrained = False``.

BatchNorm1d in the FC layers needs batches of >= 2 images in training mode.
"""

import math
import os
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from microlatent.errors import DataError, InputError
from microlatent.models.common import (
    FROM_CHECKPOINT,
    FixedSizeVAE,
    as_rgb,
    check_images,
    check_positive_int,
    to_probabilities,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNET152_LAYERS = (3, 8, 36, 3)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (v1.5, stride on the 3x3 conv): (N, c_in, H, W) -> (N, 4 planes, H/s, W/s)."""

    expansion = 4

    def __init__(self, c_in, planes, stride=1):
        super().__init__()
        c_out = planes * self.expansion
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Bottleneck ResNet without its fc: (N, 3, H, W) -> (N, 32 * base_width) features.

    layers (3, 8, 36, 3) and base_width 64 give torchvision's resnet152 (2048 features).
    """

    def __init__(self, layers=RESNET152_LAYERS, base_width=64):
        super().__init__()
        w = base_width
        self.conv1 = nn.Conv2d(3, w, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        c_in, stages = w, []
        for i, n in enumerate(layers):
            planes, stride = w * 2**i, (1 if i == 0 else 2)
            blocks = [Bottleneck(c_in, planes, stride)]
            c_in = planes * Bottleneck.expansion
            blocks += [Bottleneck(c_in, planes) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = c_in
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def load_torchvision_resnet(encoder, path):
    """Load a torchvision-format ResNet state_dict file into encoder; fc.* keys are ignored.

    Raises DataError (one line naming the file) if it is missing, unreadable or does not match.
    """
    if not os.path.isfile(path):
        raise DataError(f"pretrained ResNet weights not found: {path}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DataError(f"cannot read pretrained ResNet weights {path}: {str(e).splitlines()[0][:200]}") from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise DataError(f"{path} is not a state_dict of tensors")
    sd = {k.removeprefix("module."): v for k, v in sd.items() if not k.removeprefix("module.").startswith("fc.")}
    own = encoder.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    wrong = [k for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = [
            f"{label} {len(ks)} (e.g. {ks[0]})"
            for label, ks in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if ks
        ]
        raise DataError(f"{path} does not match this ResNet encoder: " + ", ".join(parts))
    for k in own:  # old torchvision files lack BatchNorm's num_batches_tracked
        sd.setdefault(k, own[k])
    encoder.load_state_dict(sd, strict=True)


# One doubling of the decoder: a stride-2 transposed convolution (Hashemi et al.'s decoder), or
# nearest-neighbour upsampling then a 3 x 3 convolution (as TAESD does), which cannot leave the
# checkerboard that uneven kernel overlap of a transposed convolution can.
UPSAMPLERS = {
    "transpose": lambda c_in, c_out: [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False)],
    "nearest": lambda c_in, c_out: [nn.Upsample(scale_factor=2), nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)],
}


def decoder_plan(image_size):
    """(s, k): the decoder starts at s x s and doubles k times to s * 2**k >= image_size.

    Halves image_size while it is even and above 7 (64 -> (4, 4), 224 -> (7, 5)); a size that does not
    halve down to <= 8 starts at ceil(image_size / 2**k) with k = floor(log2(image_size / 4)) and the
    output is centre-cropped.
    """
    side, stages = image_size, 0
    while side % 2 == 0 and side > 7:
        side, stages = side // 2, stages + 1
    if side > 8:
        stages = int(math.floor(math.log2(image_size / 4)))
        side = -(-image_size // 2**stages)
    return side, stages


class ResnetVAE(FixedSizeVAE):
    """ResNet-encoder VAE: (N, 1, S, S) images in [0, 1], S = image_size (default 224, >= 32); with
    ``phases`` K > 2, phase probabilities (N, K, S, S) (one-hot in, softmax out).

    encode(x) -> mu, logvar, each (N, latent_dim); decode(z) -> (N, 1 or K, S, S) in (0, 1).
    pretrained: path to a torchvision resnet state_dict (.pth) or None (train from scratch, warns).
    upsample: how the decoder doubles, "transpose" or "nearest" (see ``UPSAMPLERS``).
    """

    name = "resnet_vae"

    def __init__(
        self,
        latent_dim=9,
        layers=RESNET152_LAYERS,
        base_width=64,
        fc_hidden=1024,
        image_size=224,
        pretrained=None,
        phases=2,
        upsample="transpose",
    ):
        super().__init__()
        layers = tuple(layers) if isinstance(layers, (list, tuple)) else layers
        if not isinstance(layers, tuple) or len(layers) != 4:
            raise InputError(f"{self.name}: layers must be 4 block counts, e.g. [3, 8, 36, 3], got {layers!r}")
        check_positive_int(
            self.name,
            latent_dim=latent_dim,
            base_width=base_width,
            fc_hidden=fc_hidden,
            image_size=image_size,
            **{f"layers[{i}]": n for i, n in enumerate(layers)},
        )
        if upsample not in UPSAMPLERS:
            raise InputError(f"{self.name}: upsample must be one of {', '.join(UPSAMPLERS)}, got {upsample!r}")
        if image_size < 32:
            raise InputError(f"{self.name}: image_size must be >= 32 (ResNet downsamples by 32), got {image_size}")
        if pretrained is not None and not isinstance(pretrained, (str, os.PathLike)):
            raise InputError(f"{self.name}: pretrained must be a path to a .pth file or None, got {pretrained!r}")
        if pretrained is not None and pretrained != FROM_CHECKPOINT:
            pretrained = os.fspath(pretrained)
        self.config = dict(
            name=self.name,
            latent_dim=latent_dim,
            layers=list(layers),
            base_width=base_width,
            fc_hidden=fc_hidden,
            image_size=image_size,
            pretrained=pretrained,
        )
        if upsample != "transpose":  # absent for the default, so older checkpoints stay the same
            self.config["upsample"] = upsample
        self.latent_dim, self.image_size = latent_dim, image_size
        channels = self.set_phases(phases)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        self.encoder = ResNet(layers, base_width)
        self.fc1 = nn.Linear(self.encoder.num_features, fc_hidden)
        self.bn1 = nn.BatchNorm1d(fc_hidden, momentum=0.01)
        self.fc2 = nn.Linear(fc_hidden, fc_hidden)
        self.bn2 = nn.BatchNorm1d(fc_hidden, momentum=0.01)
        self.fc3_mu = nn.Linear(fc_hidden, latent_dim)
        self.fc3_logvar = nn.Linear(fc_hidden, latent_dim)

        self.fc4 = nn.Linear(latent_dim, fc_hidden)
        self.fc_bn4 = nn.BatchNorm1d(fc_hidden)
        self.start_side, stages = decoder_plan(image_size)
        self.fc5 = nn.Linear(fc_hidden, 64 * self.start_side**2)
        self.fc_bn5 = nn.BatchNorm1d(64 * self.start_side**2)
        widths = [64] + [max(16, 64 // 2 ** ((i + 1) // 2)) for i in range(stages)]  # 64, 32, 32, 16, 16, ...
        self.deconv = nn.Sequential(
            *[
                nn.Sequential(*UPSAMPLERS[upsample](c_in, c_out), nn.BatchNorm2d(c_out, momentum=0.01), nn.ReLU())
                for c_in, c_out in zip(widths, widths[1:])
            ]
        )
        self.conv_out = nn.Conv2d(widths[-1], channels, 3, padding=1)

        if pretrained == FROM_CHECKPOINT:
            self.pretrained, self.weights_source = None, FROM_CHECKPOINT  # load_model sets both
        elif pretrained is not None:
            load_torchvision_resnet(self.encoder, pretrained)
            self.pretrained, self.weights_source = True, pretrained
        else:
            self.pretrained, self.weights_source = False, "scratch"
            warnings.warn(
                "resnet_vae: no pretrained ResNet weights given; the encoder trains from scratch "
                "(pass pretrained='resnet152.pth' for ImageNet weights)",
                stacklevel=2,
            )

    def encode(self, x):
        check_images(x, self.name, channels=(self.channels,), size=self.image_size)
        if self.training and x.shape[0] < 2:
            raise InputError(f"{self.name}: training-mode batches need >= 2 images (BatchNorm), got 1")
        x = (as_rgb(x) - self.mean) / self.std
        h = F.relu(self.bn1(self.fc1(self.encoder(x))))
        h = F.relu(self.bn2(self.fc2(h)))
        return self.fc3_mu(h), self.fc3_logvar(h)

    def decode(self, z):
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != self.latent_dim:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise InputError(f"{self.name}: decode expects latents (N, {self.latent_dim}), got {shape}")
        if self.training and z.shape[0] < 2:
            raise InputError(f"{self.name}: training-mode batches need >= 2 latents (BatchNorm), got 1")
        h = F.relu(self.fc_bn4(self.fc4(z)))
        s = self.start_side
        h = self.conv_out(self.deconv(F.relu(self.fc_bn5(self.fc5(h))).view(-1, 64, s, s)))
        top = (h.shape[-1] - self.image_size) // 2  # 0 unless image_size is not s * 2**k
        return to_probabilities(h[..., top : top + self.image_size, top : top + self.image_size])

    def output_layer(self):
        return self.conv_out
