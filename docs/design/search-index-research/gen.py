"""Build /tmp/r18/base.db: N spans from benchmarks/backend.py's Workload (decoded by the server's own
span_rows, so detail blobs are real), the store's current schema, plus log records (ratio 2 per span
by default, like the 1M/2M target) with realistic bodies.  Also writes attrs.tsv-like table `sattr`.
Usage: nice -n 10 /work/main/.venv/bin/python gen.py [spans=200000] [logs=200000]"""
import sys, time, random, sqlite3, os, json
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/work/main/benchmarks")
import backend as B
from otel_corr.server import _store as S
from otel_corr.server._otlp import parse_spans, span_rows, SpanMessage, _value

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
NLOG = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
db = "/tmp/r18/base.db"
for f in (db, db + "-wal", db + "-shm"):
    if os.path.exists(f): os.remove(f)
wl = B.Workload(N, 24, 32, seed=7)
conn = sqlite3.connect(db)
conn.executescript(S._SCHEMA)
res = {}
def rid(digest, service):
    return res.setdefault(digest, len(res) + 1)
rows = []
resources = {}
i = 0
while len(rows) < N:
    b = wl.body(i); i += 1
    batch = span_rows(parse_spans(b.data, "application/x-protobuf"), rid)
    rows.extend(batch.rows)
    for r in batch.resources: resources[r[0]] = r
rows = rows[:N]
conn.executemany("INSERT OR IGNORE INTO resources VALUES (?,?,?,?)", resources.values())
rows.sort(key=lambda r: r[7])
conn.executemany(f"INSERT INTO spans(rowid,{S.SPAN_COLUMNS}) VALUES ({','.join(['?']*15)})",
                 [(k + 1, *r[:10], r[10] or None, r[11], bytes(r[12]), r[13] or None) for k, r in enumerate(rows)])
conn.executemany("INSERT INTO traces VALUES (?,?,?,?)", [(bytes(r[0]), k+1, r[10] or '', k+1) for k, r in enumerate(rows)])
conn.commit()
# ---- logs, realistic: per server span an access line; app lines; exceptions on failures
rng = random.Random(3)
levels = [(9, "INFO"), (13, "WARN"), (17, "ERROR"), (5, "DEBUG")]
logs = []
spans = conn.execute("SELECT rowid, trace_id, span_id, service, name, kind, start_ns, duration_ns, status, request_id, detail, resource_id FROM spans").fetchall()
def attrs_of(detail):
    return {kv.key: _value(kv.value) for kv in SpanMessage.FromString(detail).attributes}
k = 0
while len(logs) < NLOG and k < len(spans):
    rowid, tid, sid, svc, name, kind, st, du, status, req, detail, resid = spans[k]; k += 1
    a = attrs_of(detail)
    out = []
    if kind == 2:
        out.append((9, "INFO", f'{a.get("client.address")} - "{a.get("http.request.method")} {a.get("url.path")} HTTP/1.1" {a.get("http.response.status_code")} {rng.randint(90, 40000)} {du//1_000_000}ms request_id={req}', "uvicorn.access"))
        if "/orders/" in str(a.get("url.path")):
            oid = str(a.get("url.path")).rsplit("/", 1)[-1]
            out.append((9, "INFO", f"loaded order ord_{oid} for customer cus_{rng.randint(1, 90000):06d} total={rng.randint(1,900)}.{rng.randint(0,99):02d} EUR", "shop.orders"))
        if status == 2:
            out.append((17, "ERROR", "shop.payments.gateway.GatewayError: upstream gateway returned 502 (charge ch_%s, idempotency-key %s)" % (rng.randbytes(8).hex(), req), "shop.payments"))
            out.append((17, "ERROR", B.STACK[:400], "shop.errors"))
    elif kind == 1 and name.startswith(("SELECT", "UPDATE")):
        if rng.random() < 0.3:
            out.append((5, "DEBUG", f"{name} took {du/1e6:.1f} ms rows={rng.randint(0, 40)} conn=pg-primary.shop.svc:5432/shop", "sqlalchemy.engine"))
    elif kind == 3 or kind == 1:
        r = rng.random()
        if r < 0.5:
            out.append((9, "INFO", f"session verified for {a.get('enduser.id', 'user-%d' % rng.randint(1, 50000))} via {a.get('code.function.name', 'auth.verify_session')} in {a.get('code.file.path', '/app/shop/auth.py')}", "shop.auth"))
        elif r < 0.7:
            out.append((13, "WARN", f"cache miss for cart:{rng.randint(1, 50000)} falling back to postgres (ttl=300s, node redis-{rng.randint(0,5)}.cache.svc)", "shop.cache"))
        elif r < 0.75:
            out.append((13, "WARN", f"retrying POST https://api.gateway.example/v1/charges attempt {rng.randint(2,4)}/5 after ConnectionResetError: [Errno 104] Connection reset by peer", "httpx"))
    for sev, sevt, body, logger in out:
        logs.append((tid, sid, st + rng.randint(0, max(du, 1)), sev, sevt, body, logger, req, resid, "{}"))
logs = logs[:NLOG]
conn.executemany("INSERT INTO logs(trace_id, span_id, time_ns, severity, severity_text, body, logger, request_id, resource_id, attributes) VALUES (?,?,?,?,?,?,?,?,?,?)", logs)
conn.commit()
print("spans", len(rows), "logs", len(logs), "spans used for logs", k, "bodies", i)
conn.execute("VACUUM")
print("bytes", os.path.getsize(db))
