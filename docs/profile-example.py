# Something a real program does, in phases: parse a JSON document, build an
# index, load the records into SQLite, drop the Python copies, query. The
# README's flame graph (the peak) and timeline (dumps every 2 MB) are of it:
#   mallocator-prof run --interval 2000000 -p /tmp/py -o docs/profile-python.svg -- python3 docs/profile-example.py
#   mallocator-prof timeline /tmp/py.<pid>.[0-9]*.pb.gz -o docs/profile-timeline.svg
import json, sqlite3
doc = json.dumps([{"id": i, "name": "user%d" % i, "tags": ["a" * 600, "b%d" % i]} for i in range(40000)])
records = json.loads(doc)
index = {r["name"]: r for r in records}
db = sqlite3.connect(":memory:")
db.execute("create table t (id integer, name text, blob text)")
db.executemany("insert into t values (?, ?, ?)", ((r["id"], r["name"], r["tags"][0]) for r in records))
del doc, records, index
rows = db.execute("select * from t order by name").fetchall()
print(len(rows), "rows")
