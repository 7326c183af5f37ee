"""``tfneuro export``: see tfneuro/apps/commands/export.py or ``--help``."""
from tfneuro.apps.console import run_command

if __name__ == "__main__":
    run_command("export")
