"""cvlib: what an online shop's customers are worth, and why.

The stable entry points (docs/contract.md)::

  params = cvlib.load_params("params/demo.yaml")
  tables = cvlib.load_data(params)
  vecs = cvlib.embed(["great fit", "arrived broken"])
  opinions = cvlib.aspect_opinions(["runs small but lovely fabric"], "en")
  cvlib.run("params/demo.yaml", out="reports")

Imports are lazy so that ``import cvlib`` stays fast; JAX loads on first use of a model.
"""

from __future__ import annotations

import importlib
from importlib import metadata

try:
  __version__ = metadata.version("cvlib")
except metadata.PackageNotFoundError:  # running from a source tree without installation
  __version__ = "0.0.0+local"

__all__ = ["load_params", "load_data", "embed", "run", "Scorer", "aspect_opinions", "ParamsError",
           "DataError", "__version__"]

_LAZY = {
    "load_params": ("cvlib.config", "load_params"),
    "ParamsError": ("cvlib.config", "ParamsError"),
    "load_data": ("cvlib.data.adapters", "load_data"),
    "DataError": ("cvlib.data.adapters", "DataError"),
    "embed": ("cvlib.text.embedding", "embed"),
    "run": ("cvlib.runner", "run"),
    "Scorer": ("cvlib.serve.scorer", "Scorer"),
    "aspect_opinions": ("cvlib.insight.aspect_model", "aspect_opinions"),
}


def __getattr__(name: str):
  if name in _LAZY:
    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
  raise AttributeError(f"module 'cvlib' has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted(list(globals()) + list(_LAZY))
