"""``tfneuro quickstart``: paper 001's transfer recipe, small, on the synthetic infant cohort.

    python experiments/quickstart.py --out out/quickstart

The logic, flags and documentation are in tfneuro/apps/commands/quickstart.py (``--help``);
decisions and measured figures in docs/quickstart.md.
"""
from tfneuro.apps.console import run_command

if __name__ == "__main__":
    run_command("quickstart")
