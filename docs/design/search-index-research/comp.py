"""Detail-blob compression on base.db's real detail blobs (server's span_rows output).
Dictionary trained on spans of templates 0-15, tested on templates 16-31 (the workload repeats 32 templates
with fresh IDs; testing on unseen templates keeps the dictionary from memorizing the test values).
Usage: nice -n 10 /tmp/r18/venv/bin/python comp.py"""
import sqlite3, zlib, time, zstandard as zstd, collections
c = sqlite3.connect("file:/tmp/r18/base.db?mode=ro", uri=True)
rows = c.execute("SELECT rowid, detail FROM spans ORDER BY rowid").fetchall()
train = [bytes(d) for r, d in rows if ((r - 1) // 512) % 32 < 16][:20000]
test = [bytes(d) for r, d in rows if ((r - 1) // 512) % 32 >= 16][:30000]
raw = sum(map(len, test)) / len(test)
print(f"test spans {len(test)}, raw detail {raw:.1f} B/span (train {len(train)})")
def bench(name, comp, decomp, items, nspans):
    t = time.perf_counter(); out = [comp(x) for x in items]; tc = time.perf_counter() - t
    t = time.perf_counter(); back = [decomp(x) for x in out]; td = time.perf_counter() - t
    assert back[0] == (items[0] if not isinstance(items[0], list) else b"".join(items[0]))
    size = sum(map(len, out)) / nspans
    print(f"{name:34s} {size:7.1f} B/span ({size/raw*100:5.1f}%)  compress {tc/nspans*1e6:6.2f} us/span  decompress {td/nspans*1e6:6.2f} us/span (per item {td/len(items)*1e6:7.1f} us)", flush=True)
n = len(test)
for lvl in (1, 6):
    bench(f"zlib-{lvl} per span", lambda x, l=lvl: zlib.compress(x, l), zlib.decompress, test, n)
# zlib preset dictionary: the zstd-trained dictionary content (32 KB window) used as zdict
for size in (16384, 32768):
    d = zstd.train_dictionary(size, train)
    zd = d.as_bytes()
    for lvl in (1, 6):
        def zc(x, l=lvl, zd=zd):
            o = zlib.compressobj(l, zlib.DEFLATED, -15, zdict=zd); return o.compress(x) + o.flush()
        def zdec(x, zd=zd):
            o = zlib.decompressobj(-15, zdict=zd); return o.decompress(x) + o.flush()
        bench(f"zlib-{lvl} raw+zdict {size//1024}K per span", zc, zdec, test, n)
    for lvl in (1, 3):
        cc = zstd.ZstdCompressor(level=lvl, dict_data=d, write_content_size=False, write_checksum=False, write_dict_id=False)
        dd = zstd.ZstdDecompressor(dict_data=d)
        bench(f"zstd-{lvl} dict {size//1024}K per span", cc.compress, lambda x, dd=dd: dd.decompress(x, max_output_size=1 << 20), test, n)
for lvl in (1, 3):
    cc = zstd.ZstdCompressor(level=lvl, write_checksum=False); dd = zstd.ZstdDecompressor()
    bench(f"zstd-{lvl} per span no dict", cc.compress, dd.decompress, test, n)
# per batch (consecutive spans concatenated; a read decompresses the whole batch)
for b in (64, 512):
    batches = [test[i:i + b] for i in range(0, n, b)]
    for lvl in (1, 6):
        bench(f"zlib-{lvl} batch {b}", lambda x, l=lvl: zlib.compress(b"".join(x), l), zlib.decompress, batches, n)
    for lvl in (1, 3):
        cc = zstd.ZstdCompressor(level=lvl, write_checksum=False); dd = zstd.ZstdDecompressor()
        bench(f"zstd-{lvl} batch {b}", lambda x, cc=cc: cc.compress(b"".join(x)), dd.decompress, batches, n)
# dictionary training cost
t = time.perf_counter(); zstd.train_dictionary(32768, train); print(f"train 32K dict on {len(train)} samples: {time.perf_counter()-t:.2f} s")
