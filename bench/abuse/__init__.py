"""The abuse suite: attacks a live store and reports what it holds up to.

``python -m bench.abuse`` runs the full suite (``--quick`` a short slice, the one CI runs
through ``tests/integration/test_store_abuse.py``):

* ``memory``: many connections mixing partial huge requests, slow readers, pre-auth floods and
  garbage against a password-protected store full of data, while a well-behaved client keeps
  reading; reports the store's peak RSS against 1.5x its memory limit + 64 MiB, and the
  client's GET latency.
* ``fuzz``: generated inputs over both protocols (mutated valid RESP and text commands, random
  bytes, boundary numbers), every one also split at every offset in-process; reports crashes,
  hangs, internal errors, and whether a sentinel key no input can name survived.
* ``storm``: thousands of connections at once, then the max-connections refusal; reports how
  long the store took and how fast it answered meanwhile.
"""
