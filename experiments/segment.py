"""``tfneuro segment``: see tfneuro/apps/commands/segment.py or ``--help``."""
from tfneuro.apps.console import run_command

if __name__ == "__main__":
    run_command("segment")
