"""Animus user side: the Python SDK, the `animus` CLI and the Jupyter server extension."""

from animus_hub._version import __version__

__all__ = ["__version__"]
