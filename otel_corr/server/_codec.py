"""Compression of the store's blobs: zstd with a dictionary trained on the store's own data.

Why a dictionary: a span's detail (its attributes, events and status as OTLP bytes) is about
300 bytes, too small for a compressor to find repetition inside it, while across spans it is
mostly the same keys and values.  A 32 KiB dictionary trained on a few thousand of them brings
a detail from ~295 to ~41 bytes at ~1.6 µs per span (``docs/design/search-index-research.md``
compares zlib per span, zlib per batch, zlib with a preset dictionary and zstd).

A blob's first byte says how it is stored: 0 is as given, ``n`` is zstd with dictionary ``n``
of the store's ``dicts`` table, followed by the original size (a varint) and the zstd frame.
The size is ours rather than the frame's: zstd spends ~2.5 µs more per compression when the
frame records it, and without any size the decompressor must reserve a maximum (~20 µs more).

Until a store has a dictionary (its first few thousand spans,
or ``zstandard`` not installed) blobs are kept as given; a dictionary is trained on a thread of
its own, from samples the writer hands over, so the writer never waits for it.  Dictionaries are
kept for the store's life: every blob names the one it needs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Codec", "zstd_available"]

_log = logging.getLogger("otel_corr.server")

#: Samples a dictionary is trained on (and the writer collects before asking for one).
TRAIN_SAMPLES = 4000
_DICT_BYTES = 32 * 1024
_LEVEL = 3
_RAW = b"\x00"


def _zstd() -> Any:
    try:
        import zstandard
    except ImportError:  # the server extra installs it; without it blobs are stored as given
        return None
    return zstandard


def zstd_available() -> bool:
    """Whether blobs can be compressed (the ``zstandard`` package is installed)."""
    return _zstd() is not None


class Codec:
    """Packs blobs on the writer thread, unpacks them on any thread.

    ``kind`` names what the dictionaries are for (``"span"`` details, ``"log"`` records): each
    kind has its own.  ``load`` returns the store's dictionaries of that kind as {id: bytes};
    it is called again when a reader meets a blob whose dictionary it has not seen.
    """

    def __init__(self, kind: str, load: Callable[[], dict[int, bytes]]) -> None:
        self.kind = kind
        self._load = load
        self._zstd = _zstd()
        self._lock = threading.Lock()
        self._dicts: dict[int, Any] = {}
        self._local = threading.local()
        self._compressor: Any = None
        self._dict_id = 0
        self._samples: list[bytes] = []
        self._training: threading.Thread | None = None
        #: A trained dictionary waiting for the writer to store it: (bytes), taken by :meth:`take_new`.
        self._trained: bytes | None = None
        self._refresh()
        if self._dicts:
            self._use(max(self._dicts))

    def _refresh(self) -> None:
        if self._zstd is None:
            return
        loaded = self._load()
        with self._lock:
            for dict_id, data in loaded.items():
                if dict_id not in self._dicts:
                    self._dicts[dict_id] = self._dictionary(data)

    def _use(self, dict_id: int) -> None:
        zstd = self._zstd
        self._compressor = zstd.ZstdCompressor(
            level=_LEVEL,
            dict_data=self._dicts[dict_id],
            write_checksum=False,
            write_dict_id=False,
            write_content_size=False,
        )
        self._dict_id = dict_id

    # --- the writer's side ------------------------------------------------------------------

    def pack(self, data: bytes | bytearray) -> bytes:
        """``data`` as stored: compressed with the current dictionary, or as given (writer thread only)."""
        compressor = self._compressor
        if compressor is None:
            if self._zstd is not None and len(self._samples) < TRAIN_SAMPLES and self._training is None:
                self._samples.append(bytes(data))
                if len(self._samples) >= TRAIN_SAMPLES:
                    self._start_training()
            return _RAW + data
        packed: bytes = compressor.compress(data)
        size = len(data)
        if size < 0x4000:  # a one- or two-byte varint, the common case, without the loop
            head = bytes((self._dict_id, size) if size < 0x80 else (self._dict_id, size & 0x7F | 0x80, size >> 7))
        else:
            head = bytes((self._dict_id,)) + _varint(size)
        return head + packed

    def _start_training(self) -> None:
        samples, self._samples = self._samples, []

        def train() -> None:
            try:
                trained = self._zstd.train_dictionary(_DICT_BYTES, samples, level=_LEVEL)
                self._trained = trained.as_bytes()
            except Exception:  # too few distinct samples, say: keep storing blobs as given, and try again later
                _log.debug("otel-corr serve: could not train a %s dictionary", self.kind, exc_info=True)
                self._training = None

        self._training = threading.Thread(target=train, name=f"otel-corr-train-{self.kind}", daemon=True)
        self._training.start()

    def train_now(self, samples: list[bytes]) -> bytes | None:
        """A dictionary trained on ``samples`` here and now (a store's upgrade), or None if it cannot be."""
        if self._zstd is None or len(samples) < TRAIN_SAMPLES // 4:
            return None
        try:
            return self._zstd.train_dictionary(_DICT_BYTES, samples, level=_LEVEL).as_bytes()  # type: ignore[no-any-return]
        except Exception:
            _log.debug("otel-corr serve: could not train a %s dictionary", self.kind, exc_info=True)
            return None

    def give_back(self, trained: bytes) -> None:
        """A dictionary from :meth:`take_new` the writer could not store: offered again next time."""
        self._trained = trained

    def take_new(self) -> bytes | None:
        """A dictionary trained since the last call, for the writer to insert (then :meth:`adopt`)."""
        trained, self._trained = self._trained, None
        return trained

    def adopt(self, dict_id: int, data: bytes) -> None:
        """Compress with dictionary ``dict_id`` from now on (called once its row is committed)."""
        if not 0 < dict_id < 256:
            return  # a blob names its dictionary in one byte: past 255 keep using the last one
        with self._lock:
            self._dicts[dict_id] = self._dictionary(data)
        self._use(dict_id)

    def _dictionary(self, data: bytes) -> Any:
        dictionary = self._zstd.ZstdCompressionDict(data)
        # Digested once for compressing: without it every compress() call digests the 32 KiB
        # dictionary again (~15 µs a span instead of ~2).
        dictionary.precompute_compress(level=_LEVEL)
        return dictionary

    # --- any thread --------------------------------------------------------------------------

    def unpack(self, blob: bytes) -> bytes:
        """The bytes ``pack`` was given."""
        dict_id = blob[0]
        if dict_id == 0:
            return blob[1:]
        decompressors: dict[int, Any] | None = getattr(self._local, "decompressors", None)
        if decompressors is None:
            decompressors = self._local.decompressors = {}
        decompressor = decompressors.get(dict_id)
        if decompressor is None:
            if self._zstd is None:
                from ..exceptions import StoreError

                raise StoreError("this store's blobs are compressed with zstd: install the zstandard package")
            if dict_id not in self._dicts:
                self._refresh()
            with self._lock:
                dictionary = self._dicts[dict_id]
            decompressor = decompressors[dict_id] = self._zstd.ZstdDecompressor(dict_data=dictionary)
        size, start = _read_varint(blob, 1)
        if not size:  # max_output_size=0 would mean "whatever the frame says", and it says nothing
            return b""
        return decompressor.decompress(blob[start:], max_output_size=size)  # type: ignore[no-any-return]


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(blob: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of the varint at ``pos``."""
    value = shift = 0
    while True:
        byte = blob[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7
