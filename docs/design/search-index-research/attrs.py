"""Attribute index options on base.db's spans (attributes decoded from the real detail blobs).
(a) EAV WITHOUT ROWID (key_id, value, start_ns, span_rowid)   (a2) EAV, value as 64-bit hash, rowid order (no start_ns)
(b) FTS5 detail=none, one token per key=value (hashed, base32)  (c) JSON column + generated column index for ONE key
Usage: nice -n 10 /work/main/.venv/bin/python attrs.py"""
import sqlite3, time, random, os, shutil, hashlib, json, sys, base64
sys.path.insert(0, "/work/main")
from otel_corr.server._otlp import SpanMessage, _value
def txt(v):
    return "true" if v is True else "false" if v is False else json.dumps(v) if isinstance(v, (list, dict)) else str(v)
def h64(k, v):
    return int.from_bytes(hashlib.blake2b(f"{k}\0{v}".encode(), digest_size=8).digest(), "big", signed=True)
def tok(k, v):
    return "a" + base64.b32encode(hashlib.blake2b(f"{k}\0{v}".encode(), digest_size=8).digest()).decode().rstrip("=").lower()
def pct(xs, q):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(q * len(xs)))]
db = "/tmp/r18/attrs.db"
for f in (db, db + "-wal", db + "-shm"):
    if os.path.exists(f): os.remove(f)
shutil.copy("/tmp/r18/base.db", db)
c = sqlite3.connect(db)
c.execute("PRAGMA journal_mode=WAL")
spans = c.execute("SELECT rowid, start_ns, detail FROM spans").fetchall()
keys = {}
eav, eavh, docs, js = [], [], [], []
t = time.perf_counter()
for rowid, st, d in spans:
    a = {kv.key: txt(_value(kv.value)) for kv in SpanMessage.FromString(d).attributes}
    for k, v in a.items():
        kid = keys.setdefault(k, len(keys) + 1)
        eav.append((kid, v, st, rowid)); eavh.append((kid, h64(k, v), rowid))
    docs.append((rowid, " ".join(tok(k, v) for k, v in a.items())))
    js.append((json.dumps(a, separators=(",", ":")), rowid))
print(f"decode: {(time.perf_counter()-t)/len(spans)*1e6:.1f} us/span; {len(eav)/len(spans):.1f} attrs/span; {len(keys)} keys")
def build(name, ddl, sql, data):
    c.executescript(ddl)
    t = time.perf_counter()
    for i in range(0, len(data), 20000):
        c.executemany(sql, data[i:i + 20000]); c.commit()
    us = (time.perf_counter() - t) / len(spans) * 1e6
    return us
res = {}
res["a EAV (key,value,start,rowid) WR"] = build("a",
    "CREATE TABLE attrs(key_id INTEGER NOT NULL, value NOT NULL, start_ns INTEGER NOT NULL, span_row INTEGER NOT NULL, PRIMARY KEY(key_id, value, start_ns, span_row)) WITHOUT ROWID;",
    "INSERT OR IGNORE INTO attrs VALUES (?,?,?,?)", sorted(eav, key=lambda r: r[3]))
res["a2 EAV hash (key,h64,rowid) WR"] = build("a2",
    "CREATE TABLE attrh(key_id INTEGER NOT NULL, h INTEGER NOT NULL, span_row INTEGER NOT NULL, PRIMARY KEY(key_id, h, span_row)) WITHOUT ROWID;",
    "INSERT OR IGNORE INTO attrh VALUES (?,?,?)", eavh)
res["b FTS5 key=value tokens detail=none"] = build("b",
    "CREATE VIRTUAL TABLE afts USING fts5(t, content='', detail=none, tokenize='ascii');",
    "INSERT INTO afts(rowid, t) VALUES (?,?)", docs)
c.execute("INSERT INTO afts(afts) VALUES('optimize')"); c.commit()
res["c JSON column (all attrs)"] = build("c", "CREATE TABLE ajson(rowid_ INTEGER PRIMARY KEY, j TEXT);",
    "INSERT INTO ajson(j, rowid_) VALUES (?,?)", js)
t = time.perf_counter()
c.execute("CREATE INDEX ajson_user ON ajson(json_extract(j, '$.\"enduser.id\"')) WHERE json_extract(j, '$.\"enduser.id\"') IS NOT NULL"); c.commit()
res["c +1 expression index (enduser.id)"] = (time.perf_counter() - t) / len(spans) * 1e6
N = len(spans)
size = dict(c.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
fts = sum(v for k, v in size.items() if k.startswith("afts"))
print("size B/span:", {"a": size["attrs"] / N, "a2": size["attrh"] / N, "b": fts / N, "c json": size["ajson"] / N, "c idx": size["ajson_user"] / N,
      "spans table": size["spans"] / N, "spans_start": size["spans_start"] / N})
print("build us/span (bulk, sorted per 20k batch):", {k: round(v, 1) for k, v in res.items()})
lo, hi = c.execute("SELECT min(start_ns), max(start_ns) FROM spans").fetchone()
rng = random.Random(5)
samples = {k: [r for r in eav if r[0] == keys[k]] for k in ("enduser.id", "client.address", "http.route", "http.response.status_code", "db.collection.name")}
picks = {
    "enduser.id=<random> (rare)": ("enduser.id", lambda: rng.choice(samples["enduser.id"])[1]),
    "client.address=<random> (unique)": ("client.address", lambda: rng.choice(samples["client.address"])[1]),
    "http.response.status_code=500 (2%)": ("http.response.status_code", lambda: "500"),
    "http.route=/api/orders/{order_id} (common)": ("http.route", lambda: "/api/orders/{order_id}"),
    "db.collection.name=orders (common)": ("db.collection.name", lambda: "orders"),
    "missing value": ("enduser.id", lambda: "nobody"),
}
H = 3600 * 10**9
def s_rows(t0, t1):  # time window -> rowid range (rowids follow ingest time: spans_start index, 2 probes)
    a = c.execute("SELECT rowid FROM spans WHERE start_ns >= ? ORDER BY start_ns LIMIT 1", (t0,)).fetchone()
    b = c.execute("SELECT rowid FROM spans WHERE start_ns <= ? ORDER BY start_ns DESC LIMIT 1", (t1,)).fetchone()
    return (a[0] if a else 1 << 62), (b[0] if b else 0)
for label, (k, mk) in picks.items():
    for win in (1, 24):
        out = {"a": [], "a2": [], "b": [], "c-scan(old otel_attr-like)": []}
        for i in range(40):
            v = mk(); t1 = rng.randint(lo + win * H, hi) if win < 24 else hi; t0 = t1 - win * H
            t = time.perf_counter()
            r1 = c.execute("SELECT span_row FROM attrs WHERE key_id=? AND value=? AND start_ns BETWEEN ? AND ? ORDER BY start_ns DESC LIMIT 20", (keys[k], v, t0, t1)).fetchall()
            out["a"].append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            r0, r9 = s_rows(t0, t1)
            r2 = c.execute("SELECT s.rowid FROM attrh a JOIN spans s ON s.rowid = a.span_row WHERE a.key_id=? AND a.h=? AND a.span_row BETWEEN ? AND ? AND s.start_ns BETWEEN ? AND ? ORDER BY a.span_row DESC LIMIT 20", (keys[k], h64(k, v), r0, r9, t0, t1)).fetchall()
            out["a2"].append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            r3 = c.execute("SELECT s.rowid FROM afts f JOIN spans s ON s.rowid = f.rowid WHERE afts MATCH ? AND f.rowid BETWEEN ? AND ? AND s.start_ns BETWEEN ? AND ? ORDER BY f.rowid DESC LIMIT 20", (tok(k, v), r0, r9, t0, t1)).fetchall()
            out["b"].append((time.perf_counter() - t) * 1e3)
            if i < 3 and win == 1:
                t = time.perf_counter()
                c.execute("SELECT s.rowid FROM ajson j JOIN spans s ON s.rowid=j.rowid_ WHERE s.start_ns BETWEEN ? AND ? AND json_extract(j.j, '$.\"' || ? || '\"') = ? ORDER BY s.start_ns DESC LIMIT 20", (t0, t1, k, v)).fetchall()
                out["c-scan(old otel_attr-like)"].append((time.perf_counter() - t) * 1e3)
            assert len(r1) == len(r2) == len(r3), (label, len(r1), len(r2), len(r3))
        print(f"{label:42s} {win:2d}h " + "  ".join(f"{n} p50 {pct(x,.5):6.2f} p99 {pct(x,.99):6.2f}" for n, x in out.items() if x) + f" ms (hits {len(r1)})", flush=True)
print(c.execute("EXPLAIN QUERY PLAN SELECT s.rowid FROM attrh a JOIN spans s ON s.rowid = a.span_row WHERE a.key_id=? AND a.h=? AND a.span_row BETWEEN ? AND ? AND s.start_ns BETWEEN ? AND ? ORDER BY a.span_row DESC LIMIT 20", (1, 1, 1, 1, 1, 1)).fetchall())
c.close()
