"""Peer libraries used as independent oracles for the 2-point statistics (tests, benchmarks/stats.py)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import types
import warnings


def _has_module(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def import_pymks():
    """(pymks module or None, a one-line note saying which version, or why it is missing).

    PyMKS 0.4.1 does ``from pkg_resources import ...`` at import time; setuptools >= 82 no longer ships
    pkg_resources. If it is missing, a minimal stand-in is put in sys.modules for the duration of the
    import only: get_distribution() answers from importlib.metadata, and resource_string() raises
    FileNotFoundError, which is what the real one does for PyMKS's lookup of its (uninstalled)
    setup.cfg, so PyMKS falls back to numpy.fft as usual.
    """
    if not _has_module("pymks"):
        return None, "PyMKS not installed"
    note = ""
    shim = None
    if not _has_module("pkg_resources"):
        shim = types.ModuleType("pkg_resources")

        class DistributionNotFound(Exception):
            pass

        def get_distribution(name):
            try:
                return types.SimpleNamespace(version=importlib.metadata.version(name))
            except importlib.metadata.PackageNotFoundError:
                raise DistributionNotFound(name) from None

        def resource_string(package, resource_name):
            raise FileNotFoundError(f"{package}/{resource_name}")

        shim.DistributionNotFound, shim.get_distribution, shim.resource_string = (
            DistributionNotFound,
            get_distribution,
            resource_string,
        )
        sys.modules["pkg_resources"] = shim
        note = " (pkg_resources absent, setuptools>=82: imported with a stand-in)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pymks
    except Exception as err:  # noqa: BLE001 - any import failure means "no oracle", said in the note
        return None, f"PyMKS installed but does not import ({type(err).__name__}: {err})"
    finally:
        if shim is not None and sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]
    return pymks, f"PyMKS {importlib.metadata.version('pymks')}{note}"
