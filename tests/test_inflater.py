"""The OTLP body inflater: nothing after the end of the compressed stream, compressed bytes within the limit."""

from __future__ import annotations

import gzip
import zlib

import pytest

from otel_corr.server._otlp import BadRequest, Inflater, TooLarge, decompress

LIMIT = 1 << 20


def test_data_after_the_end_of_the_gzip_stream_is_refused_and_not_kept() -> None:
    """A complete gzip member followed by more chunks: the first extra chunk is a 400, none of it is held."""
    inflater = Inflater("gzip", LIMIT)
    inflater.feed(gzip.compress(b"\n\0"))
    with pytest.raises(BadRequest, match="data after the end of the gzip stream"):
        for _ in range(8):  # before the fix all 8 MiB went on into zlib's unused_data
            inflater.feed(bytes(LIMIT))
    assert inflater.body == b"\n\0"


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_trailing_bytes_or_a_second_member_in_one_chunk_are_refused(encoding: str) -> None:
    """Trailing junk (or a second gzip member) in the same chunk as the stream's end is a 400 too."""
    one = gzip.compress(b"span") if encoding == "gzip" else zlib.compress(b"span")
    for body in (one + b"junk", one + one):
        with pytest.raises(BadRequest, match=f"data after the end of the {encoding} stream"):
            decompress(body, encoding, LIMIT)
    assert decompress(one, encoding, LIMIT) == b"span"


def test_compressed_bytes_that_inflate_to_nothing_count_against_the_limit() -> None:
    """Empty stored deflate blocks (5 bytes each, no output) past the limit: 413, not an endless read."""
    inflater = Inflater("deflate", LIMIT)
    inflater.feed(b"\x78\x9c")  # zlib header
    empty_blocks = b"\x00\x00\x00\xff\xff" * (LIMIT // 5 // 4)
    with pytest.raises(TooLarge, match="before decompression"):
        for _ in range(8):
            inflater.feed(empty_blocks)
    assert inflater.body == b""
