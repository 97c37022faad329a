"""Combined query by time slices, newest first (CTE intersection per slice; stop at 20 traces).
Slices: 15 min, doubling up to the window.  Usage: nice -n 10 /work/main/.venv/bin/python combined2.py"""
import sys, time, sqlite3
exec(open("/tmp/r18/attrs3.py").read().split("c = sqlite3.connect")[0])
c = sqlite3.connect("/tmp/r18/upg.db")
def q(s): return '"' + s.replace('"', '""') + '"'
def kv(key, text):
    return " OR ".join(q(common_pb2.KeyValue(key=key, value=v).SerializeToString().hex()) for v in
                       [common_pb2.AnyValue(string_value=text)] + ([common_pb2.AnyValue(int_value=int(text))] if text.isdigit() else []))
H = 3600 * 10**9
hi = c.execute("SELECT max(start_ns) FROM spans").fetchone()[0]; lo = hi - 24 * H
def rows_for(t0, t1):
    a = c.execute("SELECT rowid FROM spans WHERE start_ns >= ? ORDER BY start_ns LIMIT 1", (t0,)).fetchone()
    b = c.execute("SELECT rowid FROM spans WHERE start_ns <= ? ORDER BY start_ns DESC LIMIT 1", (t1,)).fetchone()
    return (a[0] if a else 1 << 62), (b[0] if b else 0)
SQL = """WITH hits AS MATERIALIZED (SELECT DISTINCT l.trace_id FROM log_text f JOIN logs l ON l.id = f.rowid
            WHERE log_text MATCH :text AND l.time_ns BETWEEN :lo AND :hi),
     sp AS (SELECT s.trace_id, s.start_ns FROM span_attrs a JOIN spans s ON s.rowid = a.rowid
            WHERE span_attrs MATCH :attr AND a.rowid BETWEEN :r0 AND :r1 AND s.start_ns BETWEEN :lo AND :hi
              AND s.service = :svc AND s.duration_ns >= :dur)
SELECT trace_id, max(start_ns) m FROM sp WHERE trace_id IN hits GROUP BY trace_id ORDER BY m DESC LIMIT :n"""
cases = {
  "GatewayError + status=500 + web-frontend + >=10ms": dict(text=q("GatewayError"), attr=kv("http.response.status_code", "500"), svc="web-frontend", dur=10**7),
  "'cache miss' + common route + orders-api + >=5ms": dict(text=q("cache miss"), attr=kv("http.route", "/orders/{order_id}"), svc="orders-api", dur=5 * 10**6),
  "'cache' + status=500 (rare intersection)": dict(text=q("cache"), attr=kv("http.response.status_code", "500"), svc="orders-api", dur=0),
  "no match: 'GatewayError' + route /api/cart": dict(text=q("GatewayError"), attr=kv("http.route", "/api/cart/nothing"), svc="web-frontend", dur=0),
}
for name, p in cases.items():
    lat = []
    for i in range(30):
        t = time.perf_counter(); found = {}; end = hi; span = H // 4
        while end > lo and len(found) < 20:
            start = max(lo, end - span); r0, r1 = rows_for(start, end)
            for tid, m in c.execute(SQL, dict(p, lo=start, hi=end, r0=r0, r1=r1, n=20 - len(found))):
                found.setdefault(tid, m)
            end = start - 1; span *= 2
        lat.append((time.perf_counter() - t) * 1e3)
    lat.sort(); print(f"{name:50s} p50 {lat[15]:7.2f} p99 {lat[-1]:7.2f} ms (traces {len(found)})", flush=True)
