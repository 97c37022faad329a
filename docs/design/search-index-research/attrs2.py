"""Attribute index as FTS5 over key=value text tokens, built from the ingest heads view (the cost ingest would pay).
Compares token-doc builders (per span, Python) and FTS sizes/queries: hashed tokens vs readable key=value tokens.
Usage: nice -n 10 /work/main/.venv/bin/python attrs2.py"""
import sys, time, sqlite3, zlib, random, os
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/work/main/benchmarks")
import backend as B
from otel_corr.server._otlp import parse_spans
wl = B.Workload(100_000, 24, 32, seed=7)
heads = []
for i in range(196):
    h, raw = parse_spans(wl.body(i).data, "application/x-protobuf")
    for rs in h.resource_spans:
        for ss in rs.scope_spans:
            heads.extend(ss.spans)
N = len(heads)
PUNCT = "".join(chr(c) for c in range(33, 127) if not chr(c).isalnum())
TR = str.maketrans({" ": "\u2423", "\t": "\u2423", "\n": "\u2423", "\r": "\u2423"})
def text(v):
    k = v.WhichOneof("value")
    if k == "string_value": return v.string_value
    if k == "int_value": return str(v.int_value)
    if k == "bool_value": return "true" if v.bool_value else "false"
    if k == "double_value": return str(v.double_value)
    return None  # arrays/maps/bytes: not indexed (or JSON text), verified by decoding
def doc_text(s):
    return " ".join([f"{k}={t[:200]}".translate(TR) for k, v in s.attributes.items() if (t := text(v)) is not None])
def doc_crc(s):
    out = []
    for k, v in s.attributes.items():
        t = text(v)
        if t is not None:
            b = f"{k}={t}".encode(); out.append("a%08x%08x" % (zlib.crc32(b), zlib.adler32(b)))
    return " ".join(out)
for f in (doc_text, doc_crc):
    t = time.perf_counter(); docs = [f(s) for s in heads]; us = (time.perf_counter() - t) / N * 1e6
    db = f"/tmp/r18/a2_{f.__name__}.db"
    if os.path.exists(db): os.remove(db)
    c = sqlite3.connect(db)
    tk = "ascii" if f is doc_crc else f"unicode61 remove_diacritics 0 tokenchars '{PUNCT.replace(chr(39), chr(39)*2)}'"
    c.execute(f"CREATE VIRTUAL TABLE afts USING fts5(t, content='', detail=none, tokenize=\"{tk.replace(chr(34), chr(34)*2)}\")")
    t = time.perf_counter()
    for i in range(0, N, 10000):
        c.executemany("INSERT INTO afts(rowid, t) VALUES (?,?)", [(j + 1, docs[j]) for j in range(i, min(N, i + 10000))]); c.commit()
    ins = (time.perf_counter() - t) / N * 1e6
    c.execute("INSERT INTO afts(afts) VALUES('optimize')"); c.commit()
    size = c.execute("SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'afts%'").fetchone()[0]
    rng = random.Random(1)
    lat = []
    for _ in range(200):
        s = heads[rng.randrange(N)]; k = rng.choice(list(s.attributes)); v = text(s.attributes[k])
        q = f(type("X", (), {"attributes": {k: s.attributes[k]}})())
        q = '"' + q.replace('"', '""') + '"'
        t0 = time.perf_counter()
        try: c.execute("SELECT rowid FROM afts WHERE afts MATCH ? LIMIT 1", (q,)).fetchall()
        except Exception as e: print("FAIL", repr(q)[:200]); continue
        n = len(c.execute("SELECT rowid FROM afts WHERE afts MATCH ? ORDER BY rowid DESC LIMIT 20", (q,)).fetchall()); lat.append((time.perf_counter() - t0) * 1e3)
        assert n >= 1
    lat.sort()
    print(f"{f.__name__}: doc build {us:.1f} us/span (python, heads view), FTS insert {ins:.1f} us/span, index {size/N:.1f} B/span, query p50 {lat[len(lat)//2]:.2f} p99 {lat[int(len(lat)*.99)]:.2f} ms ({N} spans)", flush=True)
    c.close(); os.remove(db)
