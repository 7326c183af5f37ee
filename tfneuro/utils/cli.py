"""Shared behaviour of every ``experiments/*.py`` entry point.

``run(main)`` replaces ``absl.app.run(main)``. It adds ``--verbose`` and turns bad input
(:class:`tfneuro.errors.InputError`) into one line on stderr, ``error: <file or flag>:
<problem>``, and exit status 2. A traceback is printed only with ``--verbose``. Any other
exception is reported the same way with exit status 1.
"""

from __future__ import annotations

import sys
import traceback

from absl import app, flags

from tfneuro.errors import InputError

flags.DEFINE_bool("verbose", False, "Print full tracebacks on errors.")


def run(main) -> None:
    """Run an absl ``main(argv)`` with tfneuro's error reporting."""

    def wrapped(argv):
        try:
            result = main(argv)
        except InputError as e:
            _report(e, 2)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - last line of defence of a CLI
            _report(e, 1)
        return result

    app.run(wrapped)


def _report(error: BaseException, status: int):
    if flags.FLAGS.verbose:
        traceback.print_exc()
    line = str(error).splitlines()[0] if str(error) else type(error).__name__
    if not isinstance(error, InputError):
        line = f"{type(error).__name__}: {line}"
    print(f"error: {line}", file=sys.stderr)
    sys.exit(status)
