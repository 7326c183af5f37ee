"""tfneuro: Keras 3 models for infant and neonatal brain MRI.

Data flows one way (see README.md):
io -> data -> layers/models/losses/metrics -> training -> inference -> export/explain.
Sub-packages are imported on demand so that ``import tfneuro`` stays cheap.
"""

__version__ = "0.1.0"
