"""Shared in-memory cache for multi-worker Python web services."""

from blinkstore_gunicorn._version import __version__

__all__ = ["__version__"]
