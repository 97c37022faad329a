"""``uvicorn tests.apps.django_site.asgi:application``: the one line of docs/django.md."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

import otel_corr

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.apps.django_site.settings")

application = otel_corr.instrument(get_asgi_application())
