"""The apps layer: what runs on top of the library for a user.

- :mod:`tfneuro.apps.segment`: segmenting scans and cohorts with an exported SavedModel or a
  ``.keras`` model (labels in the scan's space, volumes CSV, QC picture);
- :mod:`tfneuro.apps.console`: the ``tfneuro`` command (``tfneuro segment|export|evaluate|
  quickstart``), whose commands live in :mod:`tfneuro.apps.commands`;
- :mod:`tfneuro.apps.cli`: how every command-line entry point runs (one ``error:`` line and
  exit 2 for bad input, ``--verbose`` tracebacks, quiet logs; :mod:`tfneuro.apps.quiet` keeps
  TensorFlow's C++ log lines out of stderr);
- :mod:`tfneuro.apps.outputs`: what a segmentation writes (labels, volumes CSV, QC PNG);
- :mod:`tfneuro.apps.flags`: absl flag groups shared by the experiments and what they turn
  into (a validated cohort, a :class:`tfneuro.training.TrainingConfig`);
- :mod:`tfneuro.apps.checks`: checks run before any work (output paths, model names,
  model heads).

Evaluation tables and baselines live beside it in :mod:`tfneuro.evaluation`.
"""
