"""Write-then-rename, so that no output is ever left half-written.

Writers produce a temporary file next to the target (same directory, so ``os.replace`` is an
atomic rename on POSIX); the target appears only once the writer has finished without error.
If the process dies, at most a ``.<name>.tmp-XXXX`` file is left, never a truncated target.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path in the target's directory; rename it to ``path`` on success.

    The temporary name keeps the target's extension (``.nii.gz``, ``.csv``, ``.png``, ...)
    unless ``suffix`` is given, because writers such as nibabel pick the format from it.
    The temporary path may be a file or a directory (for SavedModels). On error it is
    removed and the target is left untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(path)
    if suffix is None:
        suffix = "".join(s for s in _extensions(base))
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.tmp-", suffix=suffix, dir=directory)
    os.close(fd)
    os.unlink(tmp)  # writers create it themselves (file or directory)
    try:
        yield tmp
        if os.path.isdir(path) and not os.path.islink(path) and os.path.isdir(tmp):
            # Directory targets (SavedModel): move the old one aside, then swap.
            old = tmp + ".old"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def _extensions(name: str) -> list[str]:
    """Return the trailing extensions worth keeping, e.g. ['.nii', '.gz'] for 'a.nii.gz'."""
    root, ext = os.path.splitext(name)
    if ext == ".gz":
        return [os.path.splitext(root)[1], ext]
    return [ext]
