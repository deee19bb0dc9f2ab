"""Animus control plane: the animus-api service, its data model and the embedded stack."""

from ._version import __version__

__all__ = ["__version__"]
