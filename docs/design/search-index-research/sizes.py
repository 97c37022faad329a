"""Size breakdown of base.db by table/index (dbstat), and per-log column sizes.  Usage: python sizes.py"""
import sqlite3
c = sqlite3.connect("file:/tmp/r18/base.db?mode=ro", uri=True)
ns = c.execute("select count(*) from spans").fetchone()[0]; nl = c.execute("select count(*) from logs").fetchone()[0]
for name, b in c.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"):
    print(f"{name:20s} {b/1e6:8.1f} MB  {b/ns:7.1f} B/span  {b/nl:7.1f} B/log")
print("avg detail", c.execute("select avg(length(detail)) from spans").fetchone()[0])
print("avg log body", c.execute("select avg(length(body)), avg(length(logger)), avg(length(request_id)), avg(length(severity_text)) from logs").fetchone())
