"""Errors that tfneuro raises for bad user input.

Every check on user input raises :class:`InputError` (a ``ValueError``) whose message is one
line: ``"<file or flag>: <problem>"``. Entry points print that line and exit non-zero; they
show a traceback only with ``--verbose``.
"""

from __future__ import annotations

import os


class InputError(ValueError):
    """Bad user input: a file, flag or table that cannot be used.

    Args:
        source: the file path or flag name the problem belongs to (``None`` if none).
        problem: what is wrong, in words a user can act on.
    """

    def __init__(self, source: str | os.PathLike | None, problem: str):
        self.source = None if source is None else os.fspath(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}" if self.source else problem)


class InputErrors(InputError):
    """Several input problems, reported together (e.g. every missing file of a cohort)."""

    def __init__(self, errors: list[InputError], what: str = "input"):
        self.errors = list(errors)
        lines = "; ".join(str(e) for e in self.errors)
        super().__init__(None, f"{len(self.errors)} problem(s) with {what}: {lines}")
