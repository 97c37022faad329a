"""``gunicorn tests.apps.django_site.wsgi:application``: the one line of docs/django.md."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

import otel_corr

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.apps.django_site.settings")

application = otel_corr.instrument(get_wsgi_application())
