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
# non-periodic at 224 px than 256 MiB chunks; see benchmarks/stats.py).
_CHUNK_BYTES = 16 * 1024 * 1024


def two_point(x, periodic: bool = True, pairs="auto", crop=None, validate: bool = True):
    """2-point statistics of a batch of microstructures.

    Parameters
    ----------
    x : array or tensor
        (H, W) or (N, H, W): probability of phase 1 of a 2-phase image (binary images are the special
        case), values in [0, 1]; phase 0 is 1 - x. (N, 1, H, W) is read the same way.
        (N, C, H, W) with C >= 2: probability of each of C phases.
        NumPy in gives NumPy out (float64 stays float64, anything else becomes float32); a tensor in
        gives a tensor out on the same device, float32 or float64, differentiable. Non-periodic sums are
        accumulated in float64 whatever the input (see Returns).
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
    leave values ~1e-7 (float32 periodic) or ~1e-15 (non-periodic, summed in float64) outside [0, 1].
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
    if not periodic:
        # Each offset is divided by its own pair count, down to 1 at the corners: float32 FFT roundoff
        # (~1e-7 of the whole image's sum) would grow to ~1e-3 there, so sum in float64.
        images = images.double()

    compute = _two_phase_chunk if two_phase else _multi_phase_chunk
    padded = (height, width) if periodic else (_fast_size(2 * height - 1), _fast_size(2 * width - 1))
    spectra = 1 if two_phase else len({h for pair in pair_list for h in pair})
    per_image = images.element_size() * padded[0] * (2 * spectra * (padded[1] // 2 + 1) + (len(pair_list) + 1) * padded[1])
    chunk = max(1, _CHUNK_BYTES // per_image)
    chunks = (compute(images[i : i + chunk], pair_list, periodic, padded, crop_hw).to(out_dtype)
              for i in range(0, images.shape[0], chunk))
    if images.requires_grad and torch.is_grad_enabled():
        out = torch.cat(list(chunks))
    else:  # fill one preallocated output: no second copy of the whole result
        _check_fits_in_memory((images.shape[0], len(pair_list), *crop_hw), out_dtype, images.device)
        out = torch.empty((images.shape[0], len(pair_list), *crop_hw), dtype=out_dtype, device=images.device)
        for i, part in zip(range(0, images.shape[0], chunk), chunks):
            out[i : i + len(part)] = part
    return out.cpu().numpy() if to_numpy else out


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
        raise InputError(f"expected an image (H, W), a batch (N, H, W) or (N, C, H, W), got shape {tuple(tensor.shape)}")
    return result.detach().cpu().numpy() if to_numpy else result


def _two_phase_chunk(p1, pairs, periodic, padded, crop_hw):
    """Statistics of a 2-phase batch (N, H, W) from one FFT: with S(r) = sum x(x) x(x+r) and the window
    sums A(r) = sum_{Omega_r} x(x), B(r) = sum_{Omega_r} x(x+r) and counts n(r),
    f11 = S/n, f10 = (A - S)/n, f01 = (B - S)/n, f00 = (n - A - B + S)/n."""
    height, width = p1.shape[-2:]
    spectrum = torch.fft.rfftn(p1, s=padded, dim=(-2, -1))
    raw = torch.fft.irfftn(spectrum.conj() * spectrum, s=padded, dim=(-2, -1))
    raw = _centre(raw, height, width, periodic, crop_hw)
    if periodic:
        # Every window is the whole image: A = B = sum of x, n = H W.
        count = float(height * width)
        total = p1.sum(dim=(-2, -1))[:, None, None]
        first = second = total
    elif set(pairs) <= {(1, 1)}:  # f11 = S / n needs no window sums
        count, first, second = _pair_counts(height, width, crop_hw, p1), None, None
    else:
        count, first, second = _window_sums(p1, crop_hw)
    maps = {
        (1, 1): lambda: raw,
        (1, 0): lambda: first - raw,
        (0, 1): lambda: second - raw,
        (0, 0): lambda: count - first - second + raw,
    }
    return torch.stack([maps[pair]() for pair in pairs], dim=1) / count


def _multi_phase_chunk(phases, pairs, periodic, padded, crop_hw):
    """Statistics of an n-phase batch (N, C, H, W): one FFT per phase that a pair uses, one inverse FFT
    per pair (never all C x C products at once)."""
    height, width = phases.shape[-2:]
    spectra = {h: torch.fft.rfftn(phases[:, h], s=padded, dim=(-2, -1)) for h in sorted({h for p in pairs for h in p})}
    maps = []
    for h, k in pairs:
        raw = torch.fft.irfftn(spectra[h].conj() * spectra[k], s=padded, dim=(-2, -1))
        maps.append(_centre(raw, height, width, periodic, crop_hw))
    count = float(height * width) if periodic else _pair_counts(height, width, crop_hw, phases)
    return torch.stack(maps, dim=1) / count


def _centre(raw, height, width, periodic, crop_hw):
    """Move offset 0 of a circular correlation (index 0) to the centre and keep the wanted offsets."""
    if periodic:
        centred = torch.fft.fftshift(raw, dim=(-2, -1))
    else:
        # Offsets -(H-1)..(H-1) of the zero-padded correlation sit at indices P-(H-1)..P-1, 0..H-1.
        centred = torch.roll(raw, shifts=(height - 1, width - 1), dims=(-2, -1))[..., : 2 * height - 1, : 2 * width - 1]
    kh, kw = crop_hw
    top, left = centred.shape[-2] // 2 - kh // 2, centred.shape[-1] // 2 - kw // 2
    return centred[..., top : top + kh, left : left + kw]


def _offset_axis(size, keep):
    """Non-periodic offsets along one axis, cropped to the central ``keep``, as a tensor."""
    full = torch.arange(-(size - 1), size)
    start = len(full) // 2 - keep // 2
    return full[start : start + keep]


def _pair_counts(height, width, crop_hw, like):
    """|Omega_r| = (H - |ry|) (W - |rx|) for the non-periodic offsets kept, shape (H', W')."""
    ry = _offset_axis(height, crop_hw[0]).to(like.device)
    rx = _offset_axis(width, crop_hw[1]).to(like.device)
    return ((height - ry.abs())[:, None] * (width - rx.abs())[None, :]).to(like.dtype)


def _window_sums(p1, crop_hw):
    """For each non-periodic offset r: the count n(r), A(r) = sum of x over Omega_r (first point) and
    B(r) = sum of x over Omega_r + r (second point), from one 2-D prefix sum. Shapes (H', W') and
    (N, H', W')."""
    height, width = p1.shape[-2:]
    # prefix[i, j] = sum of x[:i, :j]
    prefix = torch.nn.functional.pad(p1.cumsum(-2).cumsum(-1), (1, 0, 1, 0))
    ry = _offset_axis(height, crop_hw[0]).to(p1.device)
    rx = _offset_axis(width, crop_hw[1]).to(p1.device)

    def box_sum(y0, y1, x0, x1):
        # The row range depends only on ry and the column range only on rx: difference the prefix sum
        # along rows, then along columns (index_select; a 2-D gather per corner was 2/3 of the time).
        rows = prefix.index_select(1, y1) - prefix.index_select(1, y0)  # (N, H', W + 1)
        return rows.index_select(2, x1) - rows.index_select(2, x0)  # (N, H', W')

    # Omega_r: first point x in [max(0, -r), min(H, H - r)) along each axis; second point is x + r.
    first = box_sum((-ry).clamp(min=0), (height - ry).clamp(max=height), (-rx).clamp(min=0), (width - rx).clamp(max=width))
    second = box_sum(ry.clamp(min=0), (height + ry).clamp(max=height), rx.clamp(min=0), (width + rx).clamp(max=width))
    return _pair_counts(height, width, crop_hw, p1), first, second


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
        raise InputError(f"the statistics {tuple(shape)} would take {_size(need)} and {_size(available)} is available: "
                         "pass fewer images at a time, fewer pairs, or a crop")


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
            raise InputError(f"the {images.shape[1]} phase probabilities must sum to 1 at every pixel "
                             f"(off by up to {error:.3g})")


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
