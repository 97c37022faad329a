"""FastAPI helpers (extra ``fastapi``).

``RequestIds`` is an annotated dependency: declare a parameter of that type and
FastAPI passes the current :class:`otel_corr.Ids`::

    from otel_corr.fastapi import RequestIds

    @app.get("/orders/{id}")
    async def order(id: int, ids: RequestIds) -> dict[str, str]:
        return {"request_id": ids.request_id}
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from ._context import Ids, current_ids

__all__ = ["RequestIds"]

#: The current request's IDs, as a FastAPI dependency.
RequestIds = Annotated[Ids, Depends(current_ids)]
