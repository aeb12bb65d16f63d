"""2-point spatial statistics f(h, h' | r) of microstructure images, by FFT (Cai et al. 2025, eq. 1-2).

    f(h, h' | r) = 1/|Omega_r| * sum_{x in Omega_r} m(h, x) m(h', x + r)

m(h, x) is the probability of phase h at pixel x. Periodic statistics wrap x + r around the image
(|Omega_r| = H W for every r); non-periodic statistics only count pairs with both points inside the
image and divide each offset by its own number of such pairs, so a constant image has a constant map.

Every map is returned centred: offset r = (ry, rx) sits at index [H'//2 + ry, W'//2 + rx], so the zero
offset is the centre pixel and f(h, h | 0) is the volume fraction of phase h. Axis 0 of an image is
ry, axis 1 is rx.

Computed in PyTorch (NumPy in gives NumPy out), differentiable, batched in memory-bounded chunks.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from microlatent.errors import InputError

# Bytes of working memory (spectra and uncropped maps) one chunk of the batch may use: small enough
# that the allocator reuses cache-warm blocks instead of faulting in fresh pages (3x faster
# non-periodic at 224 px than 256 MiB chunks; see benchmarks/stats.py). On a CPU the FFTs run
# fastest a few images at a time, in blocks that stay in cache: 2 MiB (one 224 px non-periodic image,
# 30 periodic 64 px images) was 1.3-1.5x faster than 16 MiB at 224 px non-periodic, as the floor's
# own fastest chunk is 1 image there. GPUs want large launches and keep 16 MiB.
_CHUNK_BYTES = 16 * 1024 * 1024
_CHUNK_BYTES_CPU = 2 * 1024 * 1024


def two_point(x, periodic: bool = True, pairs="auto", crop=None, validate: bool = True):
    """2-point statistics of a batch of microstructures.

    Parameters
    ----------
    x : array or tensor
        (H, W) or (N, H, W): probability of phase 1 of a 2-phase image (binary images are the special
        case), values in [0, 1]; phase 0 is 1 - x. (N, 1, H, W) is read the same way.
        (N, C, H, W) with C >= 2: probability of each of C phases.
        NumPy in gives NumPy out (float64 stays float64, anything else becomes float32); a tensor in
        gives a tensor out on the same device, float32 or float64, differentiable. Non-periodic float32
        sums are made exact or accurate where float32 roundoff would show (see Returns).
    periodic : bool
        True: x + r wraps around (output H' x W' = H x W, offsets -(H//2) .. (H-1)//2).
        False: no wrap (output (2H-1) x (2W-1), offsets -(H-1) .. H-1).
    pairs : "auto", "all" or sequence of (h, h')
        "auto": each phase's autocorrelation (h, h) for h = 0..C-1; "all": every ordered pair,
        h-major ((0,0), (0,1), ..., (C-1,C-1)), which sum to 1 at every offset; or explicit pairs.
    crop : int or (int, int), optional
        Keep only the central k x k (or kh x kw) offsets: offsets -(k//2) .. k - 1 - k//2
        (Cai et al. eq. 11 use 50).
    validate : bool
        Check that values lie in [0, 1] (costs a device sync; losses on sigmoid outputs skip it).

    Returns
    -------
    (N, K, H', W') array or tensor, one map per pair, zero offset at [H'//2, W'//2]. FFT roundoff can
    leave values ~1e-7 (float32) or ~1e-15 (float64) outside [0, 1]. Non-periodic maps divide each
    offset by its own pair count, which would magnify float32 roundoff at offsets with few pairs; there
    binary images up to 512 x 512 have their sums rounded to the whole numbers they are (exact), and
    other float32 input is summed in float64 (about 2x the time). A crop pads the FFT only as far as
    its largest offset.
    """
    tensor, to_numpy = _as_float_tensor(x)
    images, two_phase = _as_batch(tensor)
    n_phases = 2 if two_phase else images.shape[1]
    pair_list = resolve_pairs(pairs, n_phases)
    if validate:
        _check_probabilities(images)
    height, width = images.shape[-2:]
    crop_hw = _resolve_crop(crop, height, width, periodic)
    out_dtype = images.dtype
    range_y, range_x = _offset_range(height, width, periodic, crop_hw)
    whole_numbers = False
    if not periodic:
        images, whole_numbers = _nonperiodic_precision(images, _reach(range_y), _reach(range_x))

    padded = (height, width) if periodic else _padded_size(height, width, _reach(range_y), _reach(range_x))
    inverse_count = 1.0 / (height * width) if periodic else 1.0 / _pair_counts(height, width, crop_hw, images)
    needs_ones = two_phase and not periodic and any(0 in pair for pair in pair_list)
    ones = _ones_spectrum(height, width, padded, images) if needs_ones else None
    used = {h for pair in pair_list for h in pair}
    per_image = images.element_size() * padded[0] * (2 * len(used) * (padded[1] // 2 + 1) + 2 * padded[1])
    chunk = max(1, (_CHUNK_BYTES_CPU if images.device.type == "cpu" else _CHUNK_BYTES) // per_image)
    starts = range(0, images.shape[0], chunk)
    if images.requires_grad and torch.is_grad_enabled():
        out = torch.cat(
            [
                torch.stack(
                    [
                        _gather(raw, range_y, range_x) * inverse_count  # (never whole_numbers: no gradient)
                        for raw in _correlations(images[i : i + chunk], pair_list, two_phase, periodic, padded, ones)
                    ],
                    dim=1,
                )
                for i in starts
            ]
        ).to(out_dtype)
    else:  # gather, normalise and cast each map into one preallocated output in a single pass
        _check_fits_in_memory((images.shape[0], len(pair_list), *crop_hw), out_dtype, images.device)
        out = torch.empty((images.shape[0], len(pair_list), *crop_hw), dtype=out_dtype, device=images.device)
        for i in starts:
            for k, raw in enumerate(_correlations(images[i : i + chunk], pair_list, two_phase, periodic, padded, ones)):
                if whole_numbers:  # binary input: every sum is a whole number, float32 roundoff < 0.1
                    raw.round_()
                _gather(raw, range_y, range_x, scale=inverse_count, out=out[i : i + len(raw), k])
    return out.cpu().numpy() if to_numpy else out


def one_hot(labels, n_phases: int, dtype=np.float32):
    """(…, H, W) integer phase labels 0 .. n_phases - 1 -> (…, K, H, W) indicators: the in-memory form
    of a K-phase microstructure (phase probabilities), which :func:`two_point` takes as (N, K, H, W)."""
    labels = np.asarray(labels)
    return (labels[..., None, :, :] == np.arange(n_phases)[:, None, None]).astype(dtype)


def resolve_pairs(pairs, n_phases: int) -> list[tuple[int, int]]:
    """The list of (h, h') phase pairs meant by ``pairs`` ("auto", "all" or explicit) for n phases."""
    if isinstance(pairs, str):
        if pairs == "auto":
            return [(h, h) for h in range(n_phases)]
        if pairs == "all":
            return [(h, k) for h in range(n_phases) for k in range(n_phases)]
        raise InputError(f"pairs must be 'auto', 'all' or a list of (h, h') pairs, got {pairs!r}")
    try:
        pair_list = [(int(h), int(k)) for h, k in pairs]
    except (TypeError, ValueError):
        raise InputError(f"pairs must be 'auto', 'all' or a list of (h, h') pairs, got {pairs!r}") from None
    if not pair_list:
        raise InputError("pairs is empty: give at least one (h, h') pair")
    for h, k in pair_list:
        if not (0 <= h < n_phases and 0 <= k < n_phases):
            raise InputError(f"pair ({h}, {k}) names a phase outside 0..{n_phases - 1} for a {n_phases}-phase input")
    return pair_list


def offsets(shape: tuple[int, int], periodic: bool = True, crop=None) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (ry, rx) in pixels along the two axes of the maps that ``two_point`` returns for images of
    ``shape`` = (H, W): 1-D integer arrays of length H' and W'."""
    height, width = shape
    if periodic:
        ry, rx = np.arange(height) - height // 2, np.arange(width) - width // 2
    else:
        ry, rx = np.arange(-(height - 1), height), np.arange(-(width - 1), width)
    if crop is not None:
        kh, kw = _resolve_crop(crop, height, width, periodic)
        ry = ry[len(ry) // 2 - kh // 2 :][:kh]
        rx = rx[len(rx) // 2 - kw // 2 :][:kw]
    return ry, rx


def volume_fraction(x):
    """Volume fraction of phase 1 of each image of a 2-phase batch: (H, W) -> scalar, (N, H, W) or
    (N, 1, H, W) -> (N,); of each phase of an (N, C, H, W) batch -> (N, C)."""
    tensor, to_numpy = _as_float_tensor(x)
    if tensor.ndim == 2:
        result = tensor.mean()
    elif tensor.ndim == 3 or (tensor.ndim == 4 and tensor.shape[1] == 1):
        result = tensor.flatten(1).mean(1)
    elif tensor.ndim == 4:
        result = tensor.flatten(2).mean(2)
    else:
        raise InputError(
            f"expected an image (H, W), a batch (N, H, W) or (N, C, H, W), got shape {tuple(tensor.shape)}"
        )
    return result.detach().cpu().numpy() if to_numpy else result


def _correlations(images, pairs, two_phase, periodic, padded, ones):
    """Circular correlations sum_x m(h, x) m(h', x + r) of a chunk, one (N, P, Q) map per pair (h, h'),
    zero-padded to ``padded``: one forward FFT per phase used and one inverse FFT per pair. A 2-phase
    batch (N, H, W) holds phase 1; phase 0 = mask - x has spectrum ``ones`` - X, so it costs no FFT,
    and periodic 2-phase maps all follow from S = corr(x, x) and the image's sum T:
    corr(x, 1-x) = corr(1-x, x) = T - S, corr(1-x, 1-x) = HW - 2T + S."""
    if two_phase:
        x = torch.fft.rfftn(images, s=padded, dim=(-2, -1))
        if periodic:
            same = torch.fft.irfftn(x.conj() * x, s=padded, dim=(-2, -1))
            total = images.sum(dim=(-2, -1))[:, None, None]
            derived = {
                (1, 1): lambda: same,
                (0, 1): lambda: total - same,
                (1, 0): lambda: total - same,
                (0, 0): lambda: (images[0].numel() - 2 * total) + same,
            }
            yield from (derived[pair]() for pair in pairs)
            return
        spectra = {1: x, 0: ones - x if ones is not None else None}
    else:
        used = sorted({h for pair in pairs for h in pair})
        spectra = {h: torch.fft.rfftn(images[:, h], s=padded, dim=(-2, -1)) for h in used}
    for h, k in pairs:
        yield torch.fft.irfftn(spectra[h].conj() * spectra[k], s=padded, dim=(-2, -1))


def _ones_spectrum(height, width, padded, like):
    """rfft of the image's all-ones mask at the FFT size: the spectrum of 'inside the image'."""
    return torch.fft.rfftn(torch.ones((height, width), dtype=like.dtype, device=like.device), s=padded)


def _padded_size(height, width, reach_y, reach_x):
    """Non-periodic FFT size: zero-padded so that no kept offset wraps around. A circular correlation
    of length P mixes offsets r and r - P; with |r| <= m kept (the reach), P >= H + m keeps r - P below
    -(H - 1), where no pixels pair. A crop therefore needs less padding than the full map."""
    return _fast_size(height + reach_y), _fast_size(width + reach_x)


def _reach(offset_range):
    """The largest |r| of a run of offsets (first, last) through 0."""
    return max(-offset_range[0], offset_range[1])


def _offset_range(height, width, periodic, crop_hw):
    """((first ry, last ry), (first rx, last rx)) kept: a contiguous run through 0 along each axis."""
    ry, rx = offsets((height, width), periodic, crop_hw)
    return (int(ry[0]), int(ry[-1])), (int(rx[0]), int(rx[-1]))


def _gather(raw, range_y, range_x, scale=None, out=None):
    """The offsets range_y x range_x (inclusive, each a run through 0) of circular correlations ``raw``
    (..., P, Q), centred: offset r sits at index r mod P, so the negative offsets come from the end.
    Four block copies (index_select was 10x slower), times ``scale`` (a number or an (H', W') map) if
    given. With ``out`` the blocks are written there, cast to its dtype, in the same pass (no autograd)."""
    (y0, y1), (x0, x1) = range_y, range_x
    size_y, size_x = raw.shape[-2:]
    if out is None:
        out = raw.new_empty((*raw.shape[:-2], y1 - y0 + 1, x1 - x0 + 1))
    row_blocks = ((slice(None, -y0), slice(size_y + y0, None)), (slice(-y0, None), slice(None, y1 + 1)))
    col_blocks = ((slice(None, -x0), slice(size_x + x0, None)), (slice(-x0, None), slice(None, x1 + 1)))
    for rows_out, rows_in in row_blocks:
        for cols_out, cols_in in col_blocks:
            block = raw[..., rows_in, cols_in]
            if scale is None:
                out[..., rows_out, cols_out] = block
            elif isinstance(scale, torch.Tensor):
                torch.mul(block, scale[rows_out, cols_out], out=out[..., rows_out, cols_out])
            else:
                torch.mul(block, scale, out=out[..., rows_out, cols_out])
    return out


# Non-periodic maps divide each offset's sum by its own pair count n(r), down to 1 at the corners of a
# full map: float32 FFT roundoff (~1e-7 of the image's sum) grows by HW / n(r) there, to ~1e-3. So:
_FLOAT32_MIN_PAIR_SHARE = 0.25  # float32 as it is where every kept offset pairs >= 1/4 of the pixels;
_WHOLE_NUMBER_MAX_PIXELS = 512 * 512  # binary images up to this size: float32, sums rounded to whole
# numbers, which is exact: measured roundoff of an all-ones 512 x 512 image is 0.06, and 0.25 at 1024.


def _nonperiodic_precision(images, reach_y, reach_x):
    """(images in the dtype to sum in, whether to round the sums to whole numbers) for non-periodic
    statistics: float64 input stays float64; float32 is kept where its roundoff cannot show (see
    above); everything else is summed in float64 (2x the FFT time)."""
    if images.dtype == torch.float64:
        return images, False
    height, width = images.shape[-2:]
    fewest = (height - reach_y) * (width - reach_x)  # pairs at the kept offset with fewest
    if fewest >= _FLOAT32_MIN_PAIR_SHARE * height * width:
        return images, False
    if (
        height * width <= _WHOLE_NUMBER_MAX_PIXELS
        and not (images.requires_grad and torch.is_grad_enabled())
        and bool(((images == 0) | (images == 1)).all())
    ):
        return images, True
    return images.double(), False


def _pair_counts(height, width, crop_hw, like):
    """|Omega_r| = (H - |ry|) (W - |rx|) for the non-periodic offsets kept, shape (H', W')."""
    ry, rx = offsets((height, width), False, crop_hw)
    counts = (height - np.abs(ry))[:, None] * (width - np.abs(rx))[None, :]
    return torch.as_tensor(counts, dtype=like.dtype, device=like.device)


def _as_float_tensor(x):
    """(tensor, came_from_numpy). Tensors keep float32/float64 and their device; other dtypes -> float32."""
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise InputError(f"expected real phase probabilities, got a complex tensor ({x.dtype})")
        if x.dtype == torch.float64:
            return x, False
        return x.float(), False
    try:
        array = np.asarray(x)
    except Exception as err:  # ragged lists and the like
        raise InputError(f"expected an image array, got {type(x).__name__}: {err}") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError(f"expected a numeric image array, got dtype {array.dtype}")
    if np.iscomplexobj(array):  # casting would drop the imaginary part silently
        raise InputError(f"expected real phase probabilities, got a complex array ({array.dtype})")
    dtype = np.float64 if array.dtype == np.float64 else np.float32
    return torch.from_numpy(np.ascontiguousarray(array, dtype=dtype)), True


def _as_batch(tensor):
    """(images, two_phase): (N, H, W) phase-1 probabilities, or (N, C, H, W) phase probabilities."""
    shape = tuple(tensor.shape)
    if tensor.ndim == 2:
        return tensor[None], True
    if tensor.ndim == 3:
        return tensor, True
    if tensor.ndim == 4:
        if shape[1] == 1:
            return tensor[:, 0], True
        return tensor, False
    raise InputError(
        f"expected an image (H, W), a 2-phase batch (N, H, W) or an n-phase batch (N, C, H, W), got shape {shape}"
    )


def _available_memory():
    """Bytes of memory available now (Linux /proc/meminfo MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _check_fits_in_memory(shape, dtype, device):
    if device.type != "cpu":
        return  # CUDA says so itself, in one line (torch.OutOfMemoryError)
    need = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    available = _available_memory()
    if available is not None and need > available:
        raise InputError(
            f"the statistics {tuple(shape)} would take {_size(need)} and {_size(available)} is available: "
            "pass fewer images at a time, fewer pairs, or a crop"
        )


def _size(n):
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.2f} MiB"


PROBABILITY_SUM_TOL = 1e-4  # float32 softmax outputs sum to 1 within ~1e-6


def _check_probabilities(images):
    if images.numel() == 0:
        raise InputError(f"empty input of shape {tuple(images.shape)}")
    lo, hi = torch.aminmax(images.detach())
    if not (torch.isfinite(lo) and torch.isfinite(hi)):
        raise InputError("input contains NaN or infinite values")
    if lo < 0 or hi > 1:
        raise InputError(f"phase probabilities must lie in [0, 1], got values from {lo.item():.4g} to {hi.item():.4g}")
    if images.ndim == 4:  # (N, C, H, W): the C phases' probabilities must sum to 1 at every pixel
        error = (images.detach().sum(dim=1) - 1).abs().max().item()
        if error > PROBABILITY_SUM_TOL:
            raise InputError(
                f"the {images.shape[1]} phase probabilities must sum to 1 at every pixel (off by up to {error:.3g})"
            )


def _resolve_crop(crop, height, width, periodic):
    """(kh, kw) of the central offsets kept; the whole map when crop is None."""
    full = (height, width) if periodic else (2 * height - 1, 2 * width - 1)
    if crop is None:
        return full
    kh, kw = (crop, crop) if np.isscalar(crop) else tuple(crop)
    if int(kh) != kh or int(kw) != kw or kh < 1 or kw < 1:
        raise InputError(f"crop must be a positive integer or a pair of them, got {crop!r}")
    if kh > full[0] or kw > full[1]:
        raise InputError(f"crop {kh} x {kw} is larger than the {full[0]} x {full[1]} map of {height} x {width} images")
    return int(kh), int(kw)


def _fast_size(n: int) -> int:
    """Smallest 2-3-5-smooth integer >= n, a size pocketfft and cuFFT transform quickly."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1
