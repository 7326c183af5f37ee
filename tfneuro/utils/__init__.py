"""Small helpers shared by every layer of the package (no TensorFlow import here)."""

from tfneuro.utils.atomic import atomic_path, atomic_write_text
from tfneuro.utils.progress import progress

__all__ = ["atomic_path", "atomic_write_text", "progress"]
