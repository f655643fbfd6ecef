"""Backends for other frameworks' plug-in points (``contrib.django``: a Django cache backend)."""
