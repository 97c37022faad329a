"""Views that report the request's IDs, raise, and log."""

from __future__ import annotations

import logging

from django.http import HttpRequest, JsonResponse

import otel_corr

log = logging.getLogger("shop.checkout")


def _ids(request: HttpRequest) -> JsonResponse:
    ids = otel_corr.current_ids()
    header = request.headers.get("X-Request-ID")
    return JsonResponse({"trace_id": ids.trace_id, "request_id": ids.request_id, "header": header})


def home(request: HttpRequest) -> JsonResponse:
    return _ids(request)


def article(request: HttpRequest, region: str, year: int) -> JsonResponse:
    return _ids(request)


def article_slug(request: HttpRequest, region: str, slug: str) -> JsonResponse:
    return _ids(request)


def boom(request: HttpRequest) -> JsonResponse:
    raise RuntimeError("payment service exploded")


async def async_boom(request: HttpRequest) -> JsonResponse:
    raise RuntimeError("async payment service exploded")


def checkout(request: HttpRequest) -> JsonResponse:
    log.info("checking out cart %s", request.GET.get("cart", "-"))
    return _ids(request)
