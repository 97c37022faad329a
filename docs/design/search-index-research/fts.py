"""FTS5 variants over the logs of base.db: index bytes/record, build µs/record, query p50/p99, retention delete.
Usage: nice -n 10 /work/main/.venv/bin/python fts.py"""
import sqlite3, time, random, os, statistics, shutil
BASE = "/tmp/r18/base.db"
VARIANTS = {
    "u61": "tokenize='unicode61'",
    "u61_tc": "tokenize=\"unicode61 tokenchars '-_./:'\"",
    "trigram": "tokenize='trigram'",
}
def pct(xs, q):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(q * len(xs)))]
def q(s):  # safe FTS5 literal: one quoted string, inner quotes doubled
    return '"' + s.replace('"', '""') + '"'
src = sqlite3.connect(BASE)
rids = [r[0] for r in src.execute("SELECT request_id FROM logs WHERE request_id LIKE '%-%' ORDER BY random() LIMIT 200")]
short = [r[0] for r in src.execute("SELECT request_id FROM logs WHERE request_id LIKE 'req_%' ORDER BY random() LIMIT 200")]
nlogs, lo, hi = src.execute("SELECT count(*), min(time_ns), max(time_ns) FROM logs").fetchone()
src.close()
rng = random.Random(1)
for name, opts in VARIANTS.items():
    for mode in ("external", "contentless"):
        db = f"/tmp/r18/fts_{name}_{mode}.db"
        for f in (db, db + "-wal"): 
            if os.path.exists(f): os.remove(f)
        shutil.copy(BASE, db)
        c = sqlite3.connect(db)
        c.execute("PRAGMA journal_mode=WAL"); c.execute("PRAGMA synchronous=NORMAL")
        content = "content='logs', content_rowid='id'" if mode == "external" else "content=''"
        c.execute(f"CREATE VIRTUAL TABLE lfts USING fts5(body, {content}, {opts}, detail=full)")
        # insert in ingest-like batches of 5000 to time the per-record cost
        t0 = time.perf_counter()
        for start in range(0, nlogs, 5000):
            c.execute("INSERT INTO lfts(rowid, body) SELECT id, body FROM logs WHERE id > ? AND id <= ?", (start, start + 5000))
            c.commit()
        build = (time.perf_counter() - t0) / nlogs * 1e6
        c.execute("INSERT INTO lfts(lfts) VALUES('optimize')"); c.commit()
        size = c.execute("SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'lfts%'").fetchone()[0]
        queries = {
            "word GatewayError": lambda: q("GatewayError"),
            "word cache(common)": lambda: q("cache"),
            "phrase reset by peer": lambda: q("Connection reset by peer"),
            "uuid whole": lambda: q(rng.choice(rids)),
            "uuid 1st group 8hex": lambda: q(rng.choice(rids)[:8]),
            "uuid mid frag 6hex": lambda: q(rng.choice(rids)[10:16]),
            "req_ id whole": lambda: q(rng.choice(short)),
            "2 words AND": lambda: q("cache") + " " + q("redis-3.cache.svc"),
        }
        print(f"== {name} {mode}: {size/nlogs:.1f} B/log index, build {build:.1f} us/log", flush=True)
        for qn, mk in queries.items():
            top, full, nres = [], [], 0
            for i in range(60):
                expr = mk()
                win_hi = rng.randint(lo + (hi - lo) // 2, hi)
                t = time.perf_counter()
                r = c.execute("SELECT f.rowid FROM lfts f JOIN logs l ON l.id = f.rowid WHERE lfts MATCH ? AND l.time_ns BETWEEN ? AND ? ORDER BY f.rowid DESC LIMIT 20", (expr, win_hi - 86400 * 10**9, win_hi)).fetchall()
                top.append((time.perf_counter() - t) * 1e3)
                t = time.perf_counter()
                nres = c.execute("SELECT count(*) FROM lfts WHERE lfts MATCH ?", (expr,)).fetchone()[0]
                full.append((time.perf_counter() - t) * 1e3)
            print(f"  {qn:24s} top20 p50 {pct(top,.5):7.2f} p99 {pct(top,.99):7.2f} ms | all matches ({nres:6d}) p50 {pct(full,.5):7.2f} p99 {pct(full,.99):7.2f} ms", flush=True)
        # retention: delete the oldest 10% of logs with their index entries
        cut = nlogs // 10
        t = time.perf_counter()
        if mode == "external":
            c.execute("INSERT INTO lfts(lfts, rowid, body) SELECT 'delete', id, body FROM logs WHERE id <= ?", (cut,))
        else:
            c.execute("INSERT INTO lfts(lfts, rowid, body) SELECT 'delete', id, body FROM logs WHERE id <= ?", (cut,))
        c.execute("DELETE FROM logs WHERE id <= ?", (cut,))
        c.commit()
        print(f"  retention delete 10% ({cut}): {(time.perf_counter()-t)/cut*1e6:.1f} us/log", flush=True)
        c.close()
        os.remove(db)
        for f in (db + "-wal", db + "-shm"):
            if os.path.exists(f): os.remove(f)
