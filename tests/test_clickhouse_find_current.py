"""The search box and ``otel-corr find`` on a current ClickHouse release (chDB 26.x): ``test_clickhouse_find``'s
comparisons with the SQLite store, run again with the current engine for the cluster.

``test_clickhouse_find`` makes its stores with ``ClickHouseStore(url)`` on the cluster its
``cluster`` fixture starts; here ``cluster`` is the chDB engine instead, and while this module
runs, the store class it looks up is :class:`~tests.clickhouse_chdb.ChdbStore` on that engine (the
real store, with chDB clients).  The shard-down test stays with the 18.16 cluster (one engine in
process: no shard to stop).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from otel_corr.server import _clickhouse

from .clickhouse_chdb import MISSING, ChdbStore, available, shared_engine
from .test_clickhouse_find import (  # the fixtures and tests collected again here, on 26.x
    both,
    seeded,
    test_pinned_events_tags_and_numbers,
    test_pinned_ids_windows_and_phrases,
    test_random_stores_and_queries_find_the_same,
    test_the_answer_is_json_serializable_as_the_routes_send_it,
    test_the_page_and_cli_corpus_finds_the_same,
    test_what_the_page_corpus_finds,
)

pytestmark = [pytest.mark.skipif(not available(), reason=MISSING)]

__all__ = [
    "both",
    "seeded",
    "test_pinned_events_tags_and_numbers",
    "test_pinned_ids_windows_and_phrases",
    "test_random_stores_and_queries_find_the_same",
    "test_the_answer_is_json_serializable_as_the_routes_send_it",
    "test_the_page_and_cli_corpus_finds_the_same",
    "test_what_the_page_corpus_finds",
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """What ``test_clickhouse_find``'s fixtures read of a cluster (its URL), for the chDB engine; its
    stores are chDB's while this module runs."""
    engine = shared_engine()

    def store(url: str, **kwargs: Any) -> ChdbStore:
        return ChdbStore(engine, _clickhouse.parse_url(url).database, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_clickhouse, "ClickHouseStore", store)
        yield SimpleNamespace(url=engine.url("otel_corr"))


def test_the_stores_compared_here_are_on_the_current_engine(cluster: Any, seeded: Any) -> None:
    assert isinstance(seeded.clickhouse, ChdbStore)
    assert int(seeded.clickhouse.health()[0].version.split(".")[0]) >= 24
