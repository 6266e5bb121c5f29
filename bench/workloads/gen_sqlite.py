#!/usr/bin/env python3
"""gen_sqlite: writes the SQL script of the sqlite workload to stdout.

    python3 gen_sqlite.py ROWS > workload.sql
    sqlite3 :memory: < workload.sql

Creates a table, inserts ROWS rows in one transaction, creates indexes,
runs aggregate, join, sort and update queries. Deterministic: the output of
sqlite3 must be identical under every allocator (the harness compares it).
"""
import sys


def main():
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    out = sys.stdout
    w = out.write
    w("PRAGMA cache_size=-65536;\n")
    w("CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT, category INTEGER,"
      " price REAL, descr TEXT);\n")
    w("CREATE TABLE cat(id INTEGER PRIMARY KEY, label TEXT);\n")
    w("BEGIN;\n")
    for c in range(100):
        w("INSERT INTO cat VALUES(%d,'category-%03d');\n" % (c, c))
    x = 88172645463325252
    for i in range(rows):
        x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 7
        x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
        name = "item-%010d" % (x % 10**10)
        descr = ("word%d " % (x % 97)) * (1 + (x >> 40) % 12)
        w("INSERT INTO item VALUES(%d,'%s',%d,%d.%02d,'%s');\n"
          % (i, name, x % 100, (x >> 8) % 10000, (x >> 24) % 100, descr))
    w("COMMIT;\n")
    w("CREATE INDEX item_name ON item(name);\n")
    w("CREATE INDEX item_cat_price ON item(category, price);\n")
    w("SELECT count(*), sum(length(descr)), round(avg(price),4) FROM item;\n")
    w("SELECT c.label, count(*), round(sum(i.price),2) FROM item i JOIN cat c"
      " ON c.id = i.category GROUP BY c.label ORDER BY 3 DESC LIMIT 10;\n")
    w("SELECT name, price FROM item ORDER BY name LIMIT 5 OFFSET %d;\n" % (rows // 2))
    w("SELECT category, max(price) - min(price) FROM item WHERE price > 5000"
      " GROUP BY category ORDER BY category LIMIT 10;\n")
    w("UPDATE item SET descr = upper(descr) || descr WHERE id % 7 = 0;\n")
    w("DELETE FROM item WHERE id % 11 = 0;\n")
    w("SELECT count(*), sum(length(descr)) FROM item;\n")
    w("SELECT count(DISTINCT substr(name, 6, 3)) FROM item;\n")
    w("SELECT group_concat(name, ',') FROM (SELECT name FROM item WHERE category = 42"
      " ORDER BY price DESC, name LIMIT 20);\n")
    out.flush()


if __name__ == "__main__":
    main()
