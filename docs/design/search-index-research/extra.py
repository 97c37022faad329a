"""(1) extra bytes for a span-ID token in the attribute FTS; (2) a per-trace log range table (like `traces`)
instead of the logs_trace index: bytes/log (logs re-sorted by trace within 16k-record batches, as the writer would).
Usage: nice -n 10 /work/main/.venv/bin/python extra.py"""
import sqlite3, sys, time
exec(open("/tmp/r18/attrs3.py").read().split("c = sqlite3.connect")[0])
c = sqlite3.connect("file:/tmp/r18/base.db?mode=ro", uri=True)
rows = c.execute("SELECT rowid, span_id, detail FROM spans LIMIT 100000").fetchall()
m = sqlite3.connect(":memory:")
for name, mk in (("attrs only", lambda r: " ".join(map(bytes.hex, AttrRaw.FromString(bytes(r[2])).attributes))),
                 ("attrs + span-id token", lambda r: " ".join(map(bytes.hex, AttrRaw.FromString(bytes(r[2])).attributes)) + " s" + bytes(r[1]).hex())):
    t = name.replace(" ", "_").replace("+", "").replace("-", "_")
    m.execute(f"CREATE VIRTUAL TABLE {t} USING fts5(t, content='', columnsize=0, detail=none, tokenize='ascii')")
    m.executemany(f"INSERT INTO {t}(rowid, t) VALUES (?, ?)", ((r[0], mk(r)) for r in rows)); m.execute(f"INSERT INTO {t}({t}) VALUES('optimize')")
    print(f"{name:24s} {m.execute(f'SELECT sum(pgsize) FROM dbstat WHERE name LIKE ?', (t + '%',)).fetchone()[0] / len(rows):.1f} B/span")
logs = c.execute("SELECT id, trace_id, time_ns FROM logs ORDER BY id").fetchall()
m.execute("CREATE TABLE log_ranges(trace_id BLOB NOT NULL, first_id INTEGER NOT NULL, last_id INTEGER NOT NULL, PRIMARY KEY(trace_id, first_id)) WITHOUT ROWID")
m.execute("CREATE TABLE logs_idx(id INTEGER PRIMARY KEY, trace_id BLOB, time_ns INTEGER)")
m.execute("CREATE INDEX logs_trace ON logs_idx(trace_id, time_ns)")
ranges, nid = [], 1
for i in range(0, len(logs), 16384):
    batch = sorted(logs[i:i + 16384], key=lambda r: r[1])
    prev, first = None, None
    for r in batch:
        if r[1] != prev:
            if prev is not None: ranges.append((prev, first, nid - 1))
            prev, first = r[1], nid
        nid += 1
    ranges.append((prev, first, nid - 1))
m.executemany("INSERT INTO log_ranges VALUES (?,?,?)", ranges)
m.executemany("INSERT INTO logs_idx VALUES (?,?,?)", logs)
n = len(logs)
for t in ("log_ranges", "logs_trace"):
    print(f"{t:24s} {m.execute('SELECT sum(pgsize) FROM dbstat WHERE name = ?', (t,)).fetchone()[0] / n:.1f} B/log ({len(ranges) / n:.3f} ranges/log)")
