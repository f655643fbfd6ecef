"""Supervision of a private store: one restart loop for the gunicorn plugin and ``blinkstore run``.

:mod:`.supervisor` starts, watches, restarts and stops the store from the supervising process;
:mod:`.child` is the store process it runs; :mod:`.output` copies the store's output into the
supervisor's log; :mod:`.runtime` holds the process plumbing both sides share (private runtime
directories, the readiness probe, exit watching, the parent-death signal). Nothing here knows
about gunicorn: the plugin's hooks (``blinkstore_gunicorn.gunicorn``) and ``blinkstore run``
(``blinkstore_gunicorn.cli.run``) drive it.
"""
