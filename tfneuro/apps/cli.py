"""How every command-line entry point runs (``experiments/*.py`` and the ``tfneuro`` command).

``run(main)`` replaces ``absl.app.run(main)``. It adds ``--verbose`` and turns bad input
(:class:`tfneuro.errors.InputError`) into one line on stderr, ``error: <file or flag>:
<problem>``, and exit status 2. A traceback is printed only with ``--verbose``. Any other
exception is reported the same way with exit status 1.
"""

from __future__ import annotations

import sys
import traceback
import warnings

from absl import app, flags, logging

from tfneuro.errors import InputError

__all__ = ["run", "quiet_logs"]

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


def quiet_logs() -> None:
    """Silence TensorFlow's INFO/retracing log lines and Keras' "input ran out of data"
    warning (each epoch's dataset is finite by design), so summaries stay readable."""
    logging.set_verbosity(logging.ERROR)
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    # DeepSupervisionModel overrides compile(); the experiments re-compile after loading
    warnings.filterwarnings("ignore", message=r"`compile\(\)` was not called as part of model loading")
