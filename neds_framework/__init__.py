"""neds-framework: multimodal neural encoding and decoding at scale (NEDS), as plugins and recipes."""

from neds_framework.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["hookimpl", "__version__"]
