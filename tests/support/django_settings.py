"""The one process-wide Django configuration the in-process Django tests share.

Django can be configured once per process, and pytest runs every module in one: each test
module calls :func:`configure_django` and changes the rest with ``override_settings``.
"""

from __future__ import annotations

import django
from django.conf import settings


def configure_django() -> None:
    """Configure Django (once) with what every in-process Django test needs."""
    if settings.configured:
        return
    settings.configure(
        SECRET_KEY="blinkstore-gunicorn tests",
        ALLOWED_HOSTS=["testserver"],
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.sessions"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        USE_TZ=True,
    )
    django.setup()
