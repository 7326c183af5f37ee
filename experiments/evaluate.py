"""``tfneuro evaluate``: see tfneuro/apps/commands/evaluate.py or ``--help``."""
from tfneuro.apps.console import run_command

if __name__ == "__main__":
    run_command("evaluate")
