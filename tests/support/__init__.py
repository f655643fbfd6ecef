"""Shared test helpers: real store and redis-server processes (``tests.support.processes``)."""
