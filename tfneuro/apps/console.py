"""The ``tfneuro`` command (``console_scripts`` in setup.cfg): ``tfneuro COMMAND [flags]``.

    tfneuro --help                       the commands
    tfneuro segment --help               one command's flags (--helpfull: every flag)
    tfneuro segment --model saved_models/quicknat --input t1.nii.gz --output labels.nii.gz

Each command is a module of :mod:`tfneuro.apps.commands` that defines its absl flags when
imported and a ``main(argv)``; ``python experiments/X.py`` runs the same module through
:func:`run_command`. Only the chosen command's module is imported, after the C++ log filter is
in place (:mod:`tfneuro.apps.quiet`), so TensorFlow is imported into a quiet process.
"""

from __future__ import annotations

import importlib
import sys

from tfneuro import __version__

__all__ = ["COMMANDS", "main", "run_command", "usage"]

#: ``{command: (module, one-line description)}``.
COMMANDS = {
    "segment": ("tfneuro.apps.commands.segment",
                "segment NIfTI/Analyze scans (or a cohort) with an exported model"),
    "export": ("tfneuro.apps.commands.export",
               "export a trained .keras model as a SavedModel that plain TensorFlow serves"),
    "evaluate": ("tfneuro.apps.commands.evaluate",
                 "Dice, precision, HD95 and MSD of predicted label maps against references"),
    "quickstart": ("tfneuro.apps.commands.quickstart",
                   "the main job on the synthetic cohort: train, evaluate, export, segment"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: tfneuro COMMAND [flags]   (tfneuro {__version__})", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "tfneuro COMMAND --help lists a command's flags; --verbose shows tracebacks "
              "and TensorFlow's log lines."]
    return "\n".join(lines)


def _load(name: str, prog: str):
    module_name = COMMANDS[name][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:  # a missing dependency of the command, not the command
            raise
        print(f"error: {prog}: this installation of tfneuro has no {module_name} (the "
              f"'{name}' command is not installed; reinstall tfneuro)", file=sys.stderr)
        sys.exit(2)


def _adopt_help(module, prog: str) -> None:
    """Make ``--help`` show the command's docstring and flags (absl shows ``__main__``'s
    docstring and the flags keyed to ``sys.argv[0]``)."""
    from absl import flags

    main_module = sys.modules.get("__main__")
    if main_module is not None and module.__doc__:
        main_module.__doc__ = module.__doc__
    for flag in flags.FLAGS.get_key_flags_for_module(module.__name__):
        flags.FLAGS.register_key_flag_for_module(prog, flag)


def run_command(name: str, argv=None) -> None:
    """Run one command: quiet stderr (unless ``--verbose``), import its module, run its
    ``main`` through :func:`tfneuro.apps.cli.run`. ``argv`` defaults to ``sys.argv``."""
    from tfneuro.apps import cli, quiet

    argv = list(sys.argv if argv is None else argv)
    quiet.start(cli.verbose_requested(argv[1:]))
    module = _load(name, argv[0])
    _adopt_help(module, argv[0])
    cli.run(module.main, argv=argv)


def main(argv=None) -> int:
    """Entry point of the ``tfneuro`` command."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2:
        print(usage(), file=sys.stderr)
        return 2
    if argv[1] in ("-h", "--help", "help", "--helpfull"):
        print(usage())
        return 0
    if argv[1] == "--version":
        print(f"tfneuro {__version__}")
        return 0
    name = argv[1]
    if name not in COMMANDS:
        print(f"error: tfneuro: unknown command {name!r}; one of {', '.join(COMMANDS)} "
              "(tfneuro --help)", file=sys.stderr)
        return 2
    sys.argv = [f"tfneuro {name}"] + argv[2:]
    run_command(name, sys.argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
