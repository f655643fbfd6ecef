"""``python -m blinkstore_gunicorn`` is the ``blinkstore`` command."""

from blinkstore_gunicorn.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
