"""The catalog: per-episode manifests (resume markers) consolidated into Parquet tables under OUT/catalog,
each published atomically, and a DuckDB connection with a view per table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from fnmatch import fnmatch
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from pipeline import storage

from schemas.catalog import SORT_KEYS, TABLES, with_version
from schemas.robot import ROBOT_CONFIG_DIR, load_robot

MANIFEST_DIR = "_manifests"
CATALOG_DIR = "catalog"
READ_THREADS = 32


def manifest_path(out: str | Path, episode_id: str) -> str:
    return storage.join(out, MANIFEST_DIR, f"{episode_id}.json")


def write_json_atomic(path: str | Path, obj: dict) -> None:
    storage.write_bytes(path, json.dumps(obj, sort_keys=True).encode())


def iter_manifests(out: str | Path, batch: int = 2000) -> Iterator[list[dict]]:
    """Every manifest under out, in batches, in name order. Reads run on threads: on S3 each is one GET whose
    latency, not bandwidth, sets the pace."""
    folder = storage.join(out, MANIFEST_DIR)
    names = sorted(f for f in storage.list_files(folder) if f.endswith(".json") and "/" not in f)
    with ThreadPoolExecutor(READ_THREADS) as pool:
        for i in range(0, len(names), batch):
            yield list(pool.map(lambda f: json.loads(storage.read_bytes(storage.join(folder, f))), names[i:i + batch]))


def read_manifests(out: str | Path) -> dict[str, dict]:
    """The resume state: episode id -> what ingest compares (fingerprint, robot config, catalog version, status)."""
    keep = ("catalog_version", "fingerprint", "robot_config", "status", "depth")
    return {m["episode_id"]: {k: m.get(k) for k in keep} for ms in iter_manifests(out) for m in ms}


def write_table_atomic(table: pa.Table, path: str | Path) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    storage.write_bytes(path, sink.getvalue().to_pybytes())


def build_catalog(out: str | Path) -> dict[str, str]:
    """Rebuilds every catalog table from the manifests, sorted, so the same inputs give identical tables. Each
    batch of manifests becomes Arrow tables at once: columnar rows take a fraction of the manifests' dicts."""
    schemas = {name: with_version(schema) for name, schema in TABLES.items()}
    parts: dict[str, list[pa.Table]] = {name: [] for name in TABLES}
    for batch in iter_manifests(out):
        rows = {name: [] for name in TABLES}
        for m in batch:
            if m["status"] == "ok":
                rows["episodes"].append(m["episode"])
                rows["clips"] += m["clips"]
                rows["static_spans"] += m["static_spans"]
            else:
                rows["quarantine"].append(m["quarantine"])
        for name in TABLES:
            parts[name].append(pa.Table.from_pylist(rows[name], schema=schemas[name]))
    tables = {name: pa.concat_tables(parts[name]) if parts[name] else schemas[name].empty_table() for name in TABLES}
    return publish_tables(out, tables, schemas, SORT_KEYS)


def publish_tables(out: str | Path, rows: dict[str, list[dict] | pa.Table], schemas: dict[str, pa.Schema],
                   sort_keys: dict[str, list[str]]) -> dict[str, str]:
    """Writes each table to OUT/catalog/<name>.parquet, sorted so that the same rows give identical files."""
    paths = {}
    for name, schema in schemas.items():
        table = rows[name] if isinstance(rows[name], pa.Table) else pa.Table.from_pylist(rows[name], schema=schema)
        if table.num_rows:
            table = table.sort_by([(k, "ascending") for k in sort_keys[name]])
        paths[name] = storage.join(out, CATALOG_DIR, f"{name}.parquet")
        write_table_atomic(table, paths[name])
    return paths


def joint_limits() -> pa.Table:
    """(robot, joint_index, joint, lower, upper) of every robot config in configs/robots that declares limits."""
    rows = []
    for path in sorted(ROBOT_CONFIG_DIR.glob("*.yaml")):
        cfg = load_robot(path)
        rows += [{"robot": cfg.name, "joint_index": cfg.state_names.index(name), "joint": name, "lower": lo,
                  "upper": hi} for name, (lo, hi) in cfg.joint_limits.items()]
    return pa.Table.from_pylist(rows, schema=pa.schema([("robot", pa.string()), ("joint_index", pa.int32()),
                                                        ("joint", pa.string()), ("lower", pa.float64()),
                                                        ("upper", pa.float64())]))


def connect(root: str | Path) -> duckdb.DuckDBPyConnection:
    """DuckDB with a view per catalog table, `frames` over every episode's frame table and a `joint_limits`
    table from the robot configs."""
    root = storage.absolute(root)
    tables = sorted(f for f in storage.list_files(storage.join(root, CATALOG_DIR)) if f.endswith(".parquet"))
    if not tables:
        raise FileNotFoundError(f"{root} has no catalog/ folder: run `vla-data ingest` into it first")
    frames = sorted(f for f in storage.list_files(storage.join(root, "episodes")) if f.endswith("/frames.parquet"))
    con = duckdb.connect()
    limits = joint_limits()  # noqa: F841  read by name in the next statement
    con.execute("CREATE TABLE joint_limits AS SELECT * FROM limits")
    if storage.is_remote(root):  # DuckDB's S3 reader is an extension it would download: scan through pyarrow
        fs, path = storage.resolve(root)
        for f in tables:
            con.register(f"_{f[:-8]}", pads.dataset(f"{path}/{CATALOG_DIR}/{f}", filesystem=fs))
            con.execute(f"CREATE VIEW {f[:-8]} AS SELECT * FROM _{f[:-8]}")
        if frames:  # robots differ in joint count: read the fixed-size vectors as plain lists
            files = [f"{path}/episodes/{f}" for f in frames]
            schema = pq.read_schema(files[0], filesystem=fs)
            schema = pa.schema([pa.field(f.name, pa.list_(f.type.value_type)) if pa.types.is_fixed_size_list(f.type)
                                else f for f in schema])
            con.register("_frames", pads.dataset(files, schema=schema, filesystem=fs))
            con.execute("CREATE VIEW frames AS SELECT * FROM _frames")
        return con
    for f in tables:
        con.execute(f"CREATE VIEW {f[:-8]} AS SELECT * FROM read_parquet('{root}/{CATALOG_DIR}/{f}')")
    if frames:
        con.execute(f"CREATE VIEW frames AS SELECT * FROM read_parquet('{root}/episodes/*/frames.parquet')")
    return con


def attach_datasets(con: duckdb.DuckDBPyConnection, datasets: str | Path) -> None:
    """Views over the LeRobot datasets `vla-data export` wrote under DATASETS/<robot>/, each row tagged with its
    `dataset` (the folder name): shard_frames (data/), shard_episodes (meta/episodes/), shard_tasks and
    export_reports (meta/export_report.json). Robots' columns differ; the views union them by name. DATASETS may
    be an s3:// prefix: its files are then scanned through pyarrow, as in `connect`."""
    datasets = storage.absolute(datasets)
    listing = storage.list_files(datasets)
    names = sorted(f.split("/")[0] for f in listing if f.count("/") == 2 and f.endswith("/meta/info.json"))
    if not names:
        raise FileNotFoundError(f"{datasets} holds no LeRobot datasets (DATASETS/<robot>/meta/info.json)")

    def scan(name: str, files: str, reader: str) -> str:
        """A FROM source over DATASETS/<name>/<files>."""
        if not storage.is_remote(datasets):
            return f"{reader}('{datasets}/{name}/{files}')"
        fs, root = storage.resolve(datasets)
        paths = [f"{root}/{f}" for f in listing if fnmatch(f, f"{name}/{files}")]
        view = f"_{name}_{len(con.execute('SELECT * FROM duckdb_views()').fetchall())}"
        data = (pa.Table.from_pylist([json.loads(storage.read_bytes(f"s3://{p}")) for p in paths])
                if reader == "read_json_auto" else pads.dataset(paths, filesystem=fs))
        con.register(view, data)
        return view

    def union(files: str, reader: str = "read_parquet") -> str:
        return " UNION ALL BY NAME ".join(f"SELECT '{n}' AS dataset, * FROM {scan(n, files, reader)}" for n in names)

    con.execute(f"CREATE VIEW shard_frames AS {union('data/*/*.parquet')}")
    con.execute(f"CREATE VIEW shard_episodes AS {union('meta/episodes/*/*.parquet')}")
    con.execute(f"CREATE VIEW shard_tasks AS {union('meta/tasks.parquet')}")
    con.execute(f"CREATE VIEW export_reports AS {union('meta/export_report.json', 'read_json_auto')}")
