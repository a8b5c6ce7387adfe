"""featbench: how far do hand-crafted image features get, and what do ConvNet features buy?

>>> from featbench import get_extractor, get_classifier, load_dataset
"""

__version__ = "0.1.0"

from .classifiers import get_classifier  # noqa: E402
from .datasets import load_dataset  # noqa: E402
from .features import get_extractor  # noqa: E402

__all__ = ["__version__", "get_classifier", "get_extractor", "load_dataset"]
