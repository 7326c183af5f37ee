"""Quick start: paper 001's transfer recipe, small, on the synthetic infant cohort.

    python experiments/quickstart.py --out out/quickstart

A thin wrapper: the logic, flags and documentation are in
:mod:`tfneuro.apps.commands.quickstart` (also run as ``tfneuro quickstart``);
decisions and measured figures in ``docs/quickstart.md``.
"""

from tfneuro.apps import cli
from tfneuro.apps.commands.quickstart import main

if __name__ == "__main__":
    cli.run(main)
