"""Shared-memory reads: the region the store writes and every client process on the host maps.

``layout`` is the format both sides share (sans-IO), ``writer`` the store's side, ``reader``
the clients', ``blocks`` the data area's allocator and ``handout`` the ``BS.SHM`` exchange that
passes the region over the store's Unix socket. ``docs/how-it-works.md`` has the memory model.
"""
