"""The service under test for the propagation links; DOWNSTREAM_URL points at downstream_app."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import subprocess
import sys
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import aiohttp
import httpx
import requests
from fastapi import BackgroundTasks, FastAPI

import otel_corr

from .children import work, work_in_queue

otel_corr.configure_logging(fmt="json", stream=sys.stdout)
app = FastAPI()
log = logging.getLogger("frontend")
DOWNSTREAM = os.environ.get("DOWNSTREAM_URL", "")
pool = ThreadPoolExecutor(2)


def _ids() -> dict[str, str]:
    ids = otel_corr.current_ids()
    return {"trace_id": ids.trace_id, "request_id": ids.request_id}


def _logged(tag: str) -> dict[str, str]:
    log.info(tag)
    return _ids()


@app.get("/asyncio")
async def asyncio_link() -> dict[str, Any]:
    async def job(tag: str) -> dict[str, str]:
        await asyncio.sleep(0)
        return _logged(tag)

    task = await asyncio.create_task(job("create_task"))
    gathered = await asyncio.gather(job("gather-1"), job("gather-2"))
    async with asyncio.TaskGroup() as group:
        grouped = group.create_task(job("taskgroup"))
    return {"results": [task, *gathered, grouped.result()], "request": _ids()}


@app.get("/threads")
async def threads_link() -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    results = [
        await asyncio.to_thread(_logged, "to_thread"),
        await loop.run_in_executor(None, _logged, "run_in_executor"),
        pool.submit(_logged, "thread_pool").result(),
    ]
    box: list[dict[str, str]] = []
    thread = threading.Thread(target=lambda: box.append(_logged("thread")))
    thread.start()
    thread.join()

    class Worker(threading.Thread):
        def run(self) -> None:
            box.append(_logged("thread_subclass"))

    worker = Worker()
    worker.start()
    worker.join()
    manual: list[dict[str, str]] = []
    helper = threading.Thread(target=otel_corr.carry(lambda: manual.append(_logged("carry"))))
    helper.start()
    helper.join()
    return {"results": results + box + manual, "request": _ids()}


@app.get("/sync")
def sync_link() -> dict[str, Any]:
    return {"results": [_logged("sync_endpoint")], "request": _ids()}


@app.get("/background")
async def background_link(tasks: BackgroundTasks) -> dict[str, Any]:
    async def later() -> None:
        await asyncio.sleep(0.3)
        log.info("background_work")

    tasks.add_task(later)
    return {"request": _ids()}


@app.get("/subprocess")
def subprocess_link() -> dict[str, Any]:
    code = "import json, otel_corr; from tests.apps.children import work; print(json.dumps(work('subprocess_run')))"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    python_result = [line for line in child.stdout.splitlines() if '"tag"' in line and "trace_id" in line][-1]
    env_child = subprocess.run(["sh", "-c", 'echo "$TRACEPARENT|$X_REQUEST_ID"'], capture_output=True, text=True)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=work_in_queue, args=("multiprocessing_spawn", queue))
    process.start()
    spawned = queue.get(timeout=60)
    process.join()
    fork_queue = multiprocessing.get_context("fork").Queue()
    forked = multiprocessing.get_context("fork").Process(
        target=work_in_queue, args=("multiprocessing_fork", fork_queue)
    )
    forked.start()
    fork_result = fork_queue.get(timeout=60)
    forked.join()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as executor:
        pooled = executor.submit(work, "process_pool").result(timeout=60)
    import json

    return {
        "results": [json.loads(python_result), spawned, fork_result, pooled],
        "env_child": env_child.stdout.strip(),
        "child_stdout": child.stdout,
        "request": _ids(),
    }


@app.get("/outbound")
async def outbound_link() -> dict[str, Any]:
    results = []
    with httpx.Client() as client:
        results.append(client.get(f"{DOWNSTREAM}/echo", params={"via": "httpx-sync"}).json())
    async with httpx.AsyncClient() as aclient:
        results.append((await aclient.get(f"{DOWNSTREAM}/echo", params={"via": "httpx-async"})).json())
    results.append(await asyncio.to_thread(lambda: requests.get(f"{DOWNSTREAM}/echo?via=requests", timeout=10).json()))
    async with aiohttp.ClientSession() as session, session.get(f"{DOWNSTREAM}/echo?via=aiohttp") as response:
        results.append(await response.json())
    return {"results": results, "request": _ids()}


otel_corr.instrument(app)


@app.get("/celery")
async def celery_link() -> dict[str, Any]:
    from .celery_app import charge

    result = charge.delay(42)
    return {"task_id": result.id, "request": _ids()}
