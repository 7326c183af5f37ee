"""Shared pytest settings and fixtures."""

import os

# Quiet, deterministic, CPU-only defaults for every test process (set before TF imports).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TFNEURO_PROGRESS", "0")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
