"""Evaluation: the baselines every score is reported beside (:mod:`.baselines`).

numpy / scipy / scikit-image only: importing this package imports no TensorFlow.
"""
