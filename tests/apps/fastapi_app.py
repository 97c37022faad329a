"""The FastAPI app the end-to-end tests run under a real uvicorn (configured by OTEL_* variables)."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse, StreamingResponse

import otel_corr
from otel_corr.fastapi import RequestIds

app = FastAPI()


@app.get("/items/{item_id}")
async def item(item_id: int, ids: RequestIds) -> dict[str, str]:
    return {"trace_id": ids.trace_id, "span_id": ids.span_id, "request_id": ids.request_id}


@app.get("/sync")
def sync_endpoint() -> dict[str, str]:
    ids = otel_corr.current_ids()
    return {"trace_id": ids.trace_id, "request_id": ids.request_id}


@app.get("/own-header")
async def own_header() -> JSONResponse:
    return JSONResponse({"ok": True}, headers={"X-Request-ID": "set-by-route"})


@app.get("/boom")
async def boom() -> None:
    raise RuntimeError("boom")


@app.get("/stream")
def stream() -> StreamingResponse:
    def chunks() -> Iterator[bytes]:
        for i in range(3):
            yield f"{otel_corr.current_ids().request_id}:{i}\n".encode()

    return StreamingResponse(chunks())


@app.websocket("/ws")
async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(otel_corr.current_ids().request_id)
    await websocket.close()


otel_corr.instrument(app)
