"""A small real Django project for tests/test_django.py, served by uvicorn (``asgi``) and gunicorn (``wsgi``)."""
