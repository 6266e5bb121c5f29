import ctypes, json, sqlite3, sys
# Something a real program does: parse a JSON document, build an index, load a table.
doc = json.dumps([{"id": i, "name": "user%d" % i, "tags": ["a" * 600, "b%d" % i]} for i in range(40000)])
records = json.loads(doc)
index = {r["name"]: r for r in records}
db = sqlite3.connect(":memory:")
db.execute("create table t (id integer, name text, blob text)")
db.executemany("insert into t values (?, ?, ?)", ((r["id"], r["name"], r["tags"][0]) for r in records))
rows = db.execute("select * from t order by name").fetchall()
ctypes.CDLL(None).memory_profile_dump(sys.argv[1].encode())
