"""The catalog: per-episode manifests (resume markers) consolidated into Parquet tables under OUT/catalog,
each published atomically, and a DuckDB connection with a view per table."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.catalog import SORT_KEYS, TABLES, with_version
from schemas.robot import ROBOT_CONFIG_DIR, load_robot

MANIFEST_DIR = "_manifests"
CATALOG_DIR = "catalog"


def manifest_path(out: Path, episode_id: str) -> Path:
    return out / MANIFEST_DIR / f"{episode_id}.json"


def write_json_atomic(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, sort_keys=True)
    os.replace(tmp, path)


def read_manifests(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / MANIFEST_DIR).glob("*.json"))}


def write_table_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def build_catalog(out: Path) -> dict[str, Path]:
    """Rebuilds every catalog table from the manifests, sorted, so the same inputs give identical tables."""
    rows = {name: [] for name in TABLES}
    for m in read_manifests(out).values():
        if m["status"] == "ok":
            rows["episodes"].append(m["episode"])
            rows["clips"] += m["clips"]
            rows["static_spans"] += m["static_spans"]
        else:
            rows["quarantine"].append(m["quarantine"])
    return publish_tables(out, rows, {name: with_version(schema) for name, schema in TABLES.items()}, SORT_KEYS)


def publish_tables(out: Path, rows: dict[str, list[dict]], schemas: dict[str, pa.Schema],
                   sort_keys: dict[str, list[str]]) -> dict[str, Path]:
    """Writes each table to OUT/catalog/<name>.parquet, sorted so that the same rows give identical files."""
    paths = {}
    for name, schema in schemas.items():
        table = pa.Table.from_pylist(rows[name], schema=schema)
        if table.num_rows:
            table = table.sort_by([(k, "ascending") for k in sort_keys[name]])
        paths[name] = out / CATALOG_DIR / f"{name}.parquet"
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
    root = Path(root)
    if not (root / CATALOG_DIR).is_dir():
        raise FileNotFoundError(f"{root} has no catalog/ folder: run `vla-data ingest` into it first")
    con = duckdb.connect()
    limits = joint_limits()  # noqa: F841  read by name in the next statement
    con.execute("CREATE TABLE joint_limits AS SELECT * FROM limits")
    for p in sorted((root / CATALOG_DIR).glob("*.parquet")):
        con.execute(f"CREATE VIEW {p.stem} AS SELECT * FROM read_parquet('{p}')")
    if any((root / "episodes").glob("*/frames.parquet")):
        con.execute(f"CREATE VIEW frames AS SELECT * FROM read_parquet('{root}/episodes/*/frames.parquet')")
    return con


def attach_datasets(con: duckdb.DuckDBPyConnection, datasets: str | Path) -> None:
    """Views over the LeRobot datasets `vla-data export` wrote under DATASETS/<robot>/, each row tagged with its
    `dataset` (the folder name): shard_frames (data/), shard_episodes (meta/episodes/), shard_tasks and
    export_reports (meta/export_report.json). Robots' columns differ; the views union them by name."""
    roots = sorted(p.parents[1] for p in Path(datasets).glob("*/meta/info.json"))
    if not roots:
        raise FileNotFoundError(f"{datasets} holds no LeRobot datasets (DATASETS/<robot>/meta/info.json)")

    def union(files: str, reader: str = "read_parquet") -> str:
        return " UNION ALL BY NAME ".join(f"SELECT '{r.name}' AS dataset, * FROM {reader}('{r}/{files}')"
                                          for r in roots)

    con.execute(f"CREATE VIEW shard_frames AS {union('data/*/*.parquet')}")
    con.execute(f"CREATE VIEW shard_episodes AS {union('meta/episodes/*/*.parquet')}")
    con.execute(f"CREATE VIEW shard_tasks AS {union('meta/tasks.parquet')}")
    con.execute(f"CREATE VIEW export_reports AS {union('meta/export_report.json', 'read_json_auto')}")
