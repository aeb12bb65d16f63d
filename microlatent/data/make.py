"""Generate synthetic classes straight into an HDF5 file (streamed in batches)."""

from __future__ import annotations

import os

from microlatent.data import store
from microlatent.data.generators import _check_params, default_size, iter_batches, n_phases, resolve_kind
from microlatent.errors import InputError

MAX_SIZE = 8192  # pixels per side


def _provenance(name: str, seed: int, params: dict) -> dict:
    from microlatent import __version__

    return {
        "generator": f"microlatent {__version__}",
        "kind": name,
        "seed": int(seed),
        "params": repr(sorted(params.items())),
    }


def write_generated(
    path,
    kind: str,
    n: int,
    size: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    compression: str | None = "gzip",
    progress=None,
    **params,
) -> list[str]:
    """Generate ``kind`` (as :func:`~microlatent.data.generate`) and write each class to ``path``.

    Memory stays at one batch: images are generated and written ``batch_size`` at a time. Each
    group gets attributes ``generator``, ``kind``, ``seed`` and ``params``. Existing classes of the
    same names are replaced; others are kept.

    Parameters
    ----------
    path : str or path-like
    kind, n, size, seed, **params :
        As in :func:`~microlatent.data.generate`.
    batch_size : int, default 256
    compression : {"gzip", "lzf", None}, default "gzip"
    progress : callable, optional
        Called as ``progress(class_name, images_done, n)`` after each batch.

    Returns
    -------
    list of str
        Class names written.
    """
    names = resolve_kind(kind)
    for name in names:
        _check_params(name, params)  # fail before writing anything
        side = default_size(name) if size is None else size
        if side > MAX_SIZE:
            raise InputError(
                f"size {side} is too large: one {side} x {side} image is {side * side / 2**30:.1f} GiB "
                f"as bytes and ~8x that while generated; at most {MAX_SIZE}"
            )
    path = os.fspath(path)
    if os.path.exists(path):  # each class is swapped in whole (store.write_class_batches)
        _write_classes(path, names, n, size, seed, batch_size, compression, progress, params)
        return names
    # A new file is written under a temporary name and renamed when every class is in it: a killed
    # generate leaves no file that looks complete.
    partial = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.partial")
    if os.path.exists(partial):
        os.remove(partial)  # left by a killed run
    try:
        _write_classes(partial, names, n, size, seed, batch_size, compression, progress, params)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return names


def _write_classes(path, names, n, size, seed, batch_size, compression, progress, params):
    for name in names:
        side = default_size(name) if size is None else size

        def batches(name=name, side=side):
            done = 0
            if progress is not None:
                progress(name, 0, n)
            for images, labels in iter_batches(name, n, side, seed, batch_size, **params):
                yield images, labels
                done += len(images)
                if progress is not None:
                    progress(name, done, n)

        store.write_class_batches(
            path, name, batches(), n, (side, side), compression, _provenance(name, seed, params), n_phases(name)
        )


def ensure_dataset(path, kind: str, n: int, size: int | None = None, seed: int = 0, **params) -> list[str]:
    """Make sure ``path`` holds ``kind`` as generated with these arguments; generate what is missing.

    A class already in the file is kept when its image count, image size and recorded seed and
    parameters match; otherwise it is (re)generated. Returns the class names generated now.
    """
    names = resolve_kind(kind)
    todo = []
    existing = store.list_classes(path) if os.path.exists(path) else []
    for name in names:
        side = default_size(name) if size is None else size
        if name in existing and store.class_size(path, name) == (n, side, side):
            with store.open_file(path) as f:
                attrs = dict(f[name].attrs)
            wanted = _provenance(name, seed, params)
            if attrs.get("seed") == wanted["seed"] and attrs.get("params") == wanted["params"]:
                continue
        todo.append(name)
    for name in todo:
        write_generated(path, name, n, size, seed, **params)
    return todo
