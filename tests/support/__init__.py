"""Test-only helpers; the real processes tests start (store, redis-server, gunicorn) are in
the repository's ``harness`` package, which the benchmarks share."""
