"""The ``tfneuro`` console command's subcommands, one module each, every one an absl
``main(argv)`` whose flags are defined when its module is imported
(``tfneuro.apps.commands.quickstart``: the quick start)."""
