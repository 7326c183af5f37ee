"""The command-line commands: ``tfneuro COMMAND`` (:mod:`tfneuro.apps.console`) and
``python experiments/COMMAND.py`` run the same module.

A command module defines its absl flags when it is imported and a ``main(argv)`` that
:func:`tfneuro.apps.cli.run` runs; its docstring is the command's ``--help`` text. Import a
command module only to run it (its flags join the global ``absl.flags.FLAGS``).

- :mod:`~tfneuro.apps.commands.segment`: segment scans or a cohort with an exported model;
- :mod:`~tfneuro.apps.commands.export`: export a trained model as a SavedModel;
- :mod:`~tfneuro.apps.commands.evaluate`: Dice, precision, HD95, MSD of label maps;
- :mod:`~tfneuro.apps.commands.quickstart`: the quick start (paper 001's transfer recipe on
  the synthetic cohort).
"""
