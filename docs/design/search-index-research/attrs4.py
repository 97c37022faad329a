"""Token-doc builders for the attribute FTS, costs and index sizes (100k spans of base.db). Usage: python attrs4.py"""
import sys, time, sqlite3, zlib, binascii
sys.path.insert(0, "/tmp/r18"); sys.argv = ["x"]
exec(open("/tmp/r18/attrs3.py").read().split("c = sqlite3.connect")[0])
c = sqlite3.connect("file:/tmp/r18/base.db?mode=ro", uri=True)
ds = [bytes(r[0]) for r in c.execute("SELECT detail FROM spans LIMIT 100000")]
fmt = "{:x}".format
builders = {
  "crc32 hex": lambda d: " ".join(map(fmt, map(zlib.crc32, AttrRaw.FromString(d).attributes))),
  "raw KV hex (no hash)": lambda d: " ".join(map(bytes.hex, AttrRaw.FromString(d).attributes)),
  "raw KV b2a_hex joined": lambda d: b" ".join(map(binascii.b2a_hex, AttrRaw.FromString(d).attributes)).decode(),
}
for name, b in builders.items():
    t = time.perf_counter(); docs = [b(d) for d in ds]; us = (time.perf_counter() - t) / len(ds) * 1e6
    mem = sqlite3.connect(":memory:")
    mem.execute("CREATE VIRTUAL TABLE afts USING fts5(t, content='', detail=none, tokenize='ascii')")
    t = time.perf_counter(); mem.executemany("INSERT INTO afts(rowid, t) VALUES (?,?)", enumerate(docs, 1)); mem.commit()
    ins = (time.perf_counter() - t) / len(ds) * 1e6
    mem.execute("INSERT INTO afts(afts) VALUES('optimize')"); mem.commit()
    size = mem.execute("SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'afts%'").fetchone()[0]
    print(f"{name:24s} doc {us:5.2f} us/span  FTS insert {ins:5.2f} us/span  index {size/len(ds):5.1f} B/span")
