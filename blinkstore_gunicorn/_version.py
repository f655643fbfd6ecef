"""The package version, kept in one place for setuptools and ``--version``."""

__version__ = "0.1.0"
