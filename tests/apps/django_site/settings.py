"""Settings of the test project; ``DJANGO_DEBUG=1`` turns DEBUG (the technical 500 page) on."""

from __future__ import annotations

import os

DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
SECRET_KEY = "test-only-not-secret"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.apps.django_site.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
USE_TZ = True

# As many projects do: one JSON handler on the root logger.  DJANGO_LOGGING=root sends Django's loggers
# to it alone; DJANGO_LOGGING=defaults leaves them Django's default handlers too (console, mail_admins).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "otel_corr.logging.JsonFormatter"}},
    "handlers": {"out": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "json"}},
    "root": {"handlers": ["out"], "level": "INFO"},
    "loggers": {}
    if os.environ.get("DJANGO_LOGGING") == "defaults"
    else {"django": {"handlers": [], "level": "INFO", "propagate": True}},
}
