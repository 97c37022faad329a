"""A first look at otel-corr with nothing to install but the package: one line, one ID.

Runs a small FastAPI app in-process, sends three requests (none, a UUID
X-Request-ID, a caller's traceparent) and prints what the client got back and
the server span each request produced.
"""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_corr
from otel_corr.fastapi import RequestIds

spans = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(spans))
trace.set_tracer_provider(provider)  # a real service would let otel-corr export over OTLP

app = FastAPI()


@app.get("/orders/{order_id}")
async def order(order_id: int, ids: RequestIds) -> dict[str, str]:
    return {"order": str(order_id), "request_id": ids.request_id, "trace_id": ids.trace_id}


otel_corr.instrument(app)


def show(span: ReadableSpan) -> str:
    parent = format(span.parent.span_id, "016x") if span.parent else "none (root)"
    return f"span {span.name!r} trace={format(span.context.trace_id, '032x')} parent={parent}"


async def main() -> None:
    transport = httpx.ASGITransport(app=app)
    cases = {
        "no headers": {},
        "X-Request-ID: a UUID": {"X-Request-ID": "3F2504E0-4F89-11D3-9A0C-0305E82C3301"},
        "a caller's traceparent": {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
    }
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
        for label, headers in cases.items():
            spans.clear()
            r = await client.get("/orders/42", headers=headers)
            print(f"-- {label}")
            print(f"   X-Request-ID:  {r.headers['x-request-id']}")
            print(f"   traceresponse: {r.headers['traceresponse']}")
            print(f"   {show(spans.get_finished_spans()[0])}")


if __name__ == "__main__":
    asyncio.run(main())
