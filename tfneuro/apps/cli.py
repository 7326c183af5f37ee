"""How every command-line entry point runs (``experiments/*.py`` and the ``tfneuro`` command).

``run(main)`` replaces ``absl.app.run(main)``. It adds ``--verbose`` and turns bad input
(:class:`tfneuro.errors.InputError`) into one line on stderr, ``error: <file or flag>:
<problem>``, and exit status 2. A traceback is printed only with ``--verbose``. Any other
exception is reported the same way with exit status 1.

Without ``--verbose`` a command-line run is quiet (:func:`quiet_logs`): TensorFlow's C++
start-up lines are filtered out of stderr (:mod:`tfneuro.apps.quiet`; started before
TensorFlow is imported by :func:`tfneuro.apps.console.run_command`, else as early as
:func:`run` is reached), Python-side TensorFlow logging shows errors only, the warnings a user
cannot act on are ignored and the others print as one ``warning: ...`` line. The library
itself filters nothing: only these entry points do.
"""

from __future__ import annotations

import sys
import traceback
import warnings

from absl import app, flags, logging

from tfneuro.apps import quiet
from tfneuro.errors import InputError

__all__ = ["run", "quiet_logs", "verbose_requested", "IGNORED_WARNINGS"]

flags.DEFINE_bool("verbose", False, "Print full tracebacks on errors, and TensorFlow's log "
                  "lines and every Python warning in full.")

#: Python warnings (message regex) that a user of the command line cannot act on.
IGNORED_WARNINGS = (
    # each epoch's dataset is finite by design
    "Your input ran out of data",
    # DeepSupervisionModel overrides compile(); the experiments re-compile after loading
    r"`compile\(\)` was not called as part of model loading",
)


def verbose_requested(args) -> bool:
    """Whether ``--verbose`` is among the command-line ``args`` (the last of ``--verbose`` /
    ``--noverbose`` / ``--verbose=true|false`` wins); read before absl parses the flags."""
    verbose = False
    for a in args:
        if a == "--":
            break
        if a in ("--verbose", "-verbose"):
            verbose = True
        elif a in ("--noverbose", "-noverbose"):
            verbose = False
        elif a.startswith(("--verbose=", "-verbose=")):
            verbose = a.split("=", 1)[1].lower() in ("true", "t", "1", "yes")
    return verbose


def run(main, argv=None) -> None:
    """Run an absl ``main(argv)`` with tfneuro's error reporting (and quiet logs unless
    ``--verbose``). ``argv`` defaults to ``sys.argv``."""
    args = list(sys.argv if argv is None else argv)
    verbose = verbose_requested(args[1:])
    if not verbose:
        quiet_logs()

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

    app.run(wrapped, argv=args)


def _report(error: BaseException, status: int):
    if flags.FLAGS.verbose:
        traceback.print_exc()
    line = str(error).splitlines()[0] if str(error) else type(error).__name__
    if not isinstance(error, InputError):
        line = f"{type(error).__name__}: {line}"
    print(f"error: {line}", file=sys.stderr)
    sys.exit(status)


def _show_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    """``warning: <first line of the message>`` on stderr, above any progress bar."""
    from tqdm import tqdm

    text = str(message).splitlines()[0] if str(message) else category.__name__
    tqdm.write(f"warning: {text}", file=file or sys.stderr)


def quiet_logs() -> None:
    """Quiet a command-line run (see the module docstring): the C++ log filter (if not
    started yet), Python-side absl/TensorFlow logging at ERROR, :data:`IGNORED_WARNINGS`
    ignored and every other warning printed as one line. Nothing once ``--verbose`` is
    parsed."""
    if flags.FLAGS.is_parsed() and flags.FLAGS.verbose:
        return
    quiet.start()
    logging.set_verbosity(logging.ERROR)
    for message in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    warnings.showwarning = _show_one_line
