"""Real processes for the tests and the benchmarks: ``blinkstore serve``, ``redis-server`` and
gunicorn masters, each started with a bound on its readiness and always stopped.

It lives beside ``tests/`` and ``bench/`` rather than in them so that both can import it and
``python -m bench`` needs neither pytest nor the tests. It is not part of the installed
``blinkstore_gunicorn`` package: it starts processes from this source checkout, reads ``/proc``
and serves the end-to-end apps in ``tests/e2e/apps``, none of which an installed package has.
"""
