#!/usr/bin/env python3
"""DuckDB side of the query benchmark (labstream-querybench runs it with the pytools venv).

usage: querybench_duckdb.py LAKE QUERIES_JSON [THREADS]

QUERIES_JSON is a list of {"name", "sql", "check"}. One connection (with THREADS threads,
default 2) is held for the whole run, as a server holds its engine, with a view per
sensor type named like labstream's table (samples_<type>) over
read_parquet('<LAKE>/samples/<type>/**/*.parquet', hive_partitioning=true), so the SQL
text is the very one labstream runs. For each line read on standard input (a round),
every query is run once, in order, and one JSON line is printed: versions, and per query
its wall time (execute + fetch of the whole result as an Arrow table), row count and the
sum of each check column (cast to double). Ends at the end of standard input.
"""
import json
import os
import sys
import time

import duckdb
import pyarrow
import pyarrow.compute as pc


def fetch_arrow(result):
    # DuckDB 2.0 names it to_arrow_table; 1.x fetch_arrow_table.
    fetch = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table
    return fetch()


def main():
    lake, queries_path = sys.argv[1], sys.argv[2]
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    with open(queries_path) as f:
        queries = json.load(f)
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    # Timestamps in the lake are UTC; date_trunc on TIMESTAMPTZ follows this setting.
    con.execute("SET TimeZone = 'UTC'")
    samples = os.path.join(lake, "samples")
    for sensor_type in sorted(os.listdir(samples)):
        glob = os.path.join(samples, sensor_type, "**", "*.parquet").replace("'", "''")
        con.execute(
            f"CREATE VIEW samples_{sensor_type} AS SELECT * FROM read_parquet('{glob}', "
            "hive_partitioning = true, hive_types = {'date': 'DATE', 'experiment': 'VARCHAR'})"
        )
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    for _ in sys.stdin:
        out = []
        for q in queries:
            start = time.perf_counter()
            table = fetch_arrow(con.execute(q["sql"]))
            ms = (time.perf_counter() - start) * 1000.0
            sums = {}
            for col in q["check"]:
                s = pc.sum(pc.cast(table.column(col), pyarrow.float64())).as_py()
                sums[col] = 0.0 if s is None else s
            out.append({"name": q["name"], "ms": ms, "rows": table.num_rows, "sums": sums})
        line = {
            "duckdb": duckdb.__version__,
            "pyarrow": pyarrow.__version__,
            "threads": threads,
            "queries": out,
        }
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
