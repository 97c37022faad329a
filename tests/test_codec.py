"""The store's blob codec: whatever goes in comes back, raw or compressed, across dictionaries and threads."""

from __future__ import annotations

import random
import threading

from otel_corr.server._codec import TRAIN_SAMPLES, Codec


def _samples(rng: random.Random, n: int) -> list[bytes]:
    words = [b"http.route", b"/pay/{id}", b"GET", b"user.id", b"checkout", b"orders-api", b"200", b"500"]
    return [b"\x00".join(rng.choice(words) for _ in range(rng.randrange(1, 40))) + rng.randbytes(4) for _ in range(n)]


def test_blobs_come_back_raw_before_a_dictionary_and_compressed_after() -> None:
    rng = random.Random(1)
    stored: dict[int, bytes] = {}
    codec = Codec("span", lambda: dict(stored))
    early = _samples(rng, 10)
    packed_early = [codec.pack(b) for b in early]
    assert all(p[0] == 0 for p in packed_early)  # no dictionary yet: kept as given, marked raw
    trained = codec.train_now(_samples(rng, TRAIN_SAMPLES))
    assert trained is not None
    stored[1] = trained
    codec.adopt(1, trained)
    # Sizes on both sides of the one-byte length (127/128) and much larger ones.
    late = [*_samples(rng, 200), b"", b"x" * 127, b"y" * 128, rng.randbytes(70_000)]
    packed_late = [codec.pack(b) for b in late]
    assert all(p[0] == 1 for p in packed_late)
    assert sum(map(len, packed_late[:200])) < sum(map(len, late[:200])) / 2
    # A reader that has not seen the dictionary loads it from the store on first use, on any thread.
    reader = Codec("span", lambda: dict(stored))
    results: list[list[bytes]] = []
    threads = [
        threading.Thread(target=lambda: results.append([reader.unpack(p) for p in packed_late])) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [late] * 3
    assert [reader.unpack(p) for p in packed_early] == early


def test_a_second_dictionary_leaves_blobs_of_the_first_readable() -> None:
    rng = random.Random(2)
    stored: dict[int, bytes] = {}
    codec = Codec("log", lambda: dict(stored))
    blobs = []
    for dict_id in (1, 2):
        trained = codec.train_now(_samples(rng, TRAIN_SAMPLES))
        assert trained is not None
        stored[dict_id] = trained
        codec.adopt(dict_id, trained)
        data = _samples(rng, 5)
        blobs.append((data, [codec.pack(b) for b in data]))
    fresh = Codec("log", lambda: dict(stored))
    for data, packed in blobs:
        assert [fresh.unpack(p) for p in packed] == data
