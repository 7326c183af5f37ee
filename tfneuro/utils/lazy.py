"""Lazy package exports (PEP 562), shared by the packages whose names live in submodules.

A package lists ``{public name: submodule}`` and gets ``__getattr__``, ``__dir__`` and
``__all__`` from :func:`lazy_exports`, so importing the package imports no submodule (and no
TensorFlow) until a name is used.
"""

from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict[str, str]):
    """Return ``(__getattr__, __dir__, __all__)`` for ``package``.

    Args:
        package: the package's ``__name__``.
        exports: public name -> submodule name relative to ``package`` (e.g. ``"slices"``).
    """

    def __getattr__(name):
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(exports)

    return __getattr__, __dir__, sorted(exports)
