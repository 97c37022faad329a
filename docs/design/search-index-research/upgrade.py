"""Simulated format-5 -> 6 upgrade on a copy of base.db (200k spans, 200k logs), timed per step, then sizes by
table/index and combined-query latencies.  Steps: train a zstd dictionary (stored in a `dicts` table), recompress
every detail blob (zstd-3 + dict, per span), build the attribute FTS (raw-KeyValue hex tokens, detail=none,
contentless), build the log FTS (unicode61, external content), VACUUM.
Usage: nice -n 10 /work/main/.venv/bin/python upgrade.py"""
import sys, time, sqlite3, os, shutil, random
sys.path.insert(0, "/tmp/r18/venv/lib/python3.11/site-packages")
import zstandard as zstd
exec(open("/tmp/r18/attrs3.py").read().split("c = sqlite3.connect")[0])  # AttrRaw view
db = "/tmp/r18/upg.db"
for f in (db, db + "-wal", db + "-shm"):
    if os.path.exists(f): os.remove(f)
shutil.copy("/tmp/r18/base.db", db)
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA journal_mode=WAL"); c.execute("PRAGMA synchronous=NORMAL"); c.execute("PRAGMA cache_size=-32768")
N = c.execute("SELECT count(*) FROM spans").fetchone()[0]; NL = c.execute("SELECT count(*) FROM logs").fetchone()[0]
T = {}
t = time.perf_counter()
c.execute("BEGIN IMMEDIATE")
samples = [bytes(r[0]) for r in c.execute("SELECT detail FROM spans ORDER BY random() LIMIT 20000")]
d = zstd.train_dictionary(32768, samples)
c.execute("CREATE TABLE dicts(id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
c.execute("INSERT INTO dicts VALUES (1, ?)", (d.as_bytes(),))
T["train dict (20k samples)"] = time.perf_counter() - t
cc = zstd.ZstdCompressor(level=3, dict_data=d, write_content_size=False, write_checksum=False, write_dict_id=False)
t = time.perf_counter()
# dict_id column would say which dictionary; here the blob's first byte could carry it (1 byte/span)
last = 0
while True:
    rows = c.execute("SELECT rowid, detail FROM spans WHERE rowid > ? ORDER BY rowid LIMIT 20000", (last,)).fetchall()
    if not rows: break
    c.executemany("UPDATE spans SET detail = ? WHERE rowid = ?", [(b"\x01" + cc.compress(bytes(dd)), r) for r, dd in rows])
    last = rows[-1][0]
T["recompress details"] = time.perf_counter() - t
t = time.perf_counter()
c.execute("CREATE VIRTUAL TABLE span_attrs USING fts5(t, content='', detail=none, tokenize='ascii')")
dd_ = zstd.ZstdDecompressor(dict_data=d)
last = 0
while True:
    rows = c.execute("SELECT rowid, detail FROM spans WHERE rowid > ? ORDER BY rowid LIMIT 20000", (last,)).fetchall()
    if not rows: break
    c.executemany("INSERT INTO span_attrs(rowid, t) VALUES (?, ?)",
                  [(r, " ".join(map(bytes.hex, AttrRaw.FromString(dd_.decompress(bytes(x)[1:], max_output_size=1 << 20)).attributes))) for r, x in rows])
    last = rows[-1][0]
T["attribute FTS (decompress+parse+insert)"] = time.perf_counter() - t
t = time.perf_counter()
c.execute("CREATE VIRTUAL TABLE log_text USING fts5(body, content='logs', content_rowid='id', tokenize='unicode61')")
c.execute("INSERT INTO log_text(log_text) VALUES('rebuild')")
T["log FTS rebuild"] = time.perf_counter() - t
t = time.perf_counter()
c.execute("INSERT INTO span_attrs(span_attrs) VALUES('optimize')"); c.execute("INSERT INTO log_text(log_text) VALUES('optimize')")
c.execute("PRAGMA user_version = 6")
c.execute("COMMIT")
T["FTS optimize + commit"] = time.perf_counter() - t
t = time.perf_counter(); c.execute("PRAGMA wal_checkpoint(TRUNCATE)"); T["checkpoint"] = time.perf_counter() - t
t = time.perf_counter(); c.execute("VACUUM"); T["VACUUM"] = time.perf_counter() - t
for k, v in T.items():
    print(f"{k:42s} {v:6.2f} s  = {v / N * 1e5:6.2f} s per 100k spans")
tot = 0
for name, b in c.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall():
    tot += b
    if b > 50000: print(f"  {name:26s} {b / N:7.1f} B/span")
print(f"  TOTAL                      {tot / N:7.1f} B/span ({N} spans, {NL} logs; file {os.path.getsize(db) / N:.1f} B/span)")
# combined query: text + attribute + service + duration, 24 h, newest 20 traces
rng = random.Random(2)
def q(s): return '"' + s.replace('"', '""') + '"'
def kv(key, text):
    return " OR ".join(q(common_pb2.KeyValue(key=key, value=v).SerializeToString().hex()) for v in
                       [common_pb2.AnyValue(string_value=text)] + ([common_pb2.AnyValue(int_value=int(text))] if text.isdigit() else []))
hi = c.execute("SELECT max(start_ns) FROM spans").fetchone()[0]; lo = hi - 24 * 3600 * 10**9
SQL = """WITH hits AS (SELECT l.trace_id FROM log_text f JOIN logs l ON l.id = f.rowid
            WHERE log_text MATCH :text AND l.time_ns BETWEEN :lo AND :hi),
     spans_hit AS (SELECT s.trace_id, s.start_ns FROM span_attrs a JOIN spans s ON s.rowid = a.rowid
            WHERE span_attrs MATCH :attr AND s.start_ns BETWEEN :lo AND :hi AND s.service = :svc AND s.duration_ns >= :dur)
SELECT trace_id, max(start_ns) m FROM spans_hit WHERE trace_id IN (SELECT trace_id FROM hits) GROUP BY trace_id ORDER BY m DESC LIMIT 20"""
cases = {
  "text 'GatewayError' + status=500 + web-frontend + >=10ms": lambda: dict(text=q("GatewayError"), attr=kv("http.response.status_code", "500"), svc="web-frontend", dur=10**7),
  "text 'cache miss' + route common + orders-api + >=5ms": lambda: dict(text=q("cache miss"), attr=kv("http.route", "/orders/{order_id}"), svc="orders-api", dur=5 * 10**6),
  "attr only enduser.id=random (24h)": None,
}
users = [r[0] for r in c.execute("SELECT 'user-' || (abs(random()) % 50000) FROM spans LIMIT 100")]
for name, mk in cases.items():
    lat = []
    for i in range(40):
        t = time.perf_counter()
        if mk is None:
            n = len(c.execute("SELECT s.trace_id FROM span_attrs a JOIN spans s ON s.rowid = a.rowid WHERE span_attrs MATCH ? AND s.start_ns BETWEEN ? AND ? ORDER BY a.rowid DESC LIMIT 20", (kv("enduser.id", rng.choice(users)), lo, hi)).fetchall())
        else:
            n = len(c.execute(SQL, dict(mk(), lo=lo, hi=hi)).fetchall())
        lat.append((time.perf_counter() - t) * 1e3)
    lat.sort(); print(f"{name:56s} p50 {lat[20]:7.2f} p99 {lat[-1]:7.2f} ms (n={n})")
print(c.execute("EXPLAIN QUERY PLAN " + SQL, dict(cases[next(iter(cases))](), lo=lo, hi=hi)).fetchall())
# retention: delete oldest 10% of spans with their attribute-FTS entries (contentless: needs the tokens again)
cut = N // 10
t = time.perf_counter()
c.execute("BEGIN IMMEDIATE")
rows = c.execute("SELECT rowid, detail FROM spans WHERE rowid <= ?", (cut,)).fetchall()
c.executemany("INSERT INTO span_attrs(span_attrs, rowid, t) VALUES ('delete', ?, ?)",
              [(r, " ".join(map(bytes.hex, AttrRaw.FromString(dd_.decompress(bytes(x)[1:], max_output_size=1 << 20)).attributes))) for r, x in rows])
c.execute("DELETE FROM spans WHERE rowid <= ?", (cut,))
c.execute("COMMIT")
print(f"retention: delete 10% spans + attr-FTS entries: {(time.perf_counter() - t) / cut * 1e6:.1f} us/span")
c.close()
