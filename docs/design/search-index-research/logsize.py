"""Log-record slimming: zstd-dict compression of bodies, FTS5 detail=full/column with columnsize=0.
Usage: nice -n 10 /tmp/r18/venv/bin/python logsize.py"""
import sqlite3, time, zstandard as zstd
c = sqlite3.connect("file:/tmp/r18/base.db?mode=ro", uri=True)
bodies = [r[0].encode() for r in c.execute("SELECT body FROM logs ORDER BY id")]
train, test = bodies[:50000:2], bodies[100000:]
d = zstd.train_dictionary(16384, train)
cc = zstd.ZstdCompressor(level=3, dict_data=d, write_content_size=False, write_checksum=False, write_dict_id=False)
t = time.perf_counter(); out = [cc.compress(b) for b in test]; us = (time.perf_counter() - t) / len(test) * 1e6
print(f"log body raw {sum(map(len, test))/len(test):.1f} B -> zstd-3 dict16K {sum(map(len, out))/len(test):.1f} B, {us:.2f} us/log")
m = sqlite3.connect(":memory:")
for det in ("full", "column"):
    m.execute(f"CREATE VIRTUAL TABLE f_{det} USING fts5(body, content='', columnsize=0, detail={det})")
    t = time.perf_counter()
    m.executemany(f"INSERT INTO f_{det}(rowid, body) VALUES (?, ?)", ((i, b.decode()) for i, b in enumerate(bodies, 1)))
    us = (time.perf_counter() - t) / len(bodies) * 1e6
    m.execute(f"INSERT INTO f_{det}(f_{det}) VALUES('optimize')")
    size = m.execute(f"SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'f_{det}%'").fetchone()[0]
    print(f"FTS detail={det} columnsize=0: {size/len(bodies):.1f} B/log, insert {us:.1f} us/log")
