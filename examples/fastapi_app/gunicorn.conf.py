"""gunicorn settings for the demo: two uvicorn workers sharing one blinkstore store.

Run from anywhere (``make demo`` does)::

    gunicorn -c examples/fastapi_app/gunicorn.conf.py

The last lines adopt blinkstore-gunicorn: the master starts the store before forking the
workers and every worker's app gets ``request.state.cache``. ``gunicorn -c
python:blinkstore_gunicorn.conf app:app`` run in this directory reads this file too.
"""

import os

# The app module sits next to this file, whatever the current directory is.
chdir = os.path.dirname(os.path.abspath(__file__))
wsgi_app = "app:app"
bind = os.environ.get("DEMO_BIND", "127.0.0.1:8000")
workers = 2
worker_class = "uvicorn_worker.UvicornWorker"

# Store settings: every `blinkstore serve` option, as blinkstore_<option>.
blinkstore_memory_limit = "64MB"

from blinkstore_gunicorn.gunicorn import adopt  # noqa: E402

adopt(globals())
