"""Progress bars for long work (tqdm on stderr).

Set ``TFNEURO_PROGRESS=0`` to silence them (the test suite does).
"""

from __future__ import annotations

import os

from tqdm.auto import tqdm


def progress(iterable=None, *, desc: str | None = None, total: int | None = None,
             unit: str = "it", leave: bool = True):
    """Wrap ``iterable`` in a tqdm progress bar, unless disabled by ``TFNEURO_PROGRESS=0``."""
    disable = os.environ.get("TFNEURO_PROGRESS", "1") == "0"
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, disable=disable,
                dynamic_ncols=True)
