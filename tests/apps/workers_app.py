"""An app for the process-model tests: each response says which worker process served it."""

from __future__ import annotations

import os

from fastapi import FastAPI

import otel_corr

app = FastAPI()


@app.get("/pid")
async def pid() -> dict[str, int]:
    return {"pid": os.getpid()}


otel_corr.instrument(app)
