"""Ray job: raw recordings -> validated episodes, static spans, atomic clips and the catalog.

Run as `vla-data ingest IN OUT`, `python -m jobs.ingest IN OUT`, or on a cluster with
`ray job submit --address http://HEAD:8265 -- python -m jobs.ingest IN OUT`. Without an address Ray starts
in-process; with one (or RAY_ADDRESS set, as inside a submitted job) it joins that cluster.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path

import ray

from jobs.runtime import TaskPool, init_ray
from pipeline import adapters, storage
from pipeline.catalog import build_catalog, connect, read_manifests
from pipeline.ingest import config_hash, episode_id, ingest_episode
from schemas.catalog import CATALOG_VERSION
from schemas.episode import SourceRef
from schemas.robot import RobotConfig, load_robot, robot_for_format

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    out: Path | str  # a local folder, or an s3:// URI
    discovered: int
    processed: int
    skipped: int
    per_robot: list[dict] = field(default_factory=list)
    quarantined: list[dict] = field(default_factory=list)
    catalog: dict[str, str] = field(default_factory=dict)


def _robots(refs: list[SourceRef], robot: str | None, ignore_labels: bool) -> dict[SourceRef, RobotConfig]:
    """The robot config of each recording: the one given (recordings of other formats are left out), else the
    one the source names (SourceRef.robot), else its format's default."""
    configs: dict[str, RobotConfig] = {}

    def config(name: str, fmt: str) -> RobotConfig:
        if (name or fmt) not in configs:
            cfg = load_robot(name) if name else robot_for_format(fmt)
            if ignore_labels:
                cfg = cfg.model_copy(update={"segmentation": cfg.segmentation.model_copy(
                    update={"use_source_labels": False})})
            configs[name or fmt] = cfg
        return configs[name or fmt]

    if robot:
        given = config(robot, "")
        return {r: given for r in refs if r.source_format == given.source_format}
    return {r: config(r.robot, r.source_format) for r in refs}


def summarize(out: str) -> tuple[list[dict], list[dict]]:
    con = connect(out)
    per_robot = con.execute("""
        SELECT robot, count(*) AS episodes, sum(duration_s) / 3600 AS hours, sum(num_clips) AS clips,
               sum(static_s) AS static_s
        FROM episodes GROUP BY robot ORDER BY robot""").fetchall()
    quarantined = con.execute("SELECT source_format, source_key, reason_code, reason FROM quarantine "
                              "ORDER BY source_format, source_key").fetchall()
    cols = ("robot", "episodes", "hours", "clips", "static_s")
    return [dict(zip(cols, r)) for r in per_robot], [dict(zip(("format", "source_key", "code", "reason"), q))
                                                     for q in quarantined]


def run_ingest(input_dir: str | Path, out: str | Path, formats: list[str] | None = None, robot: str | None = None,
               address: str | None = None, progress: bool = True, ignore_labels: bool = False,
               depth: bool = False) -> IngestResult:
    """Ingests every recording under input_dir that is new or changed (files or robot config) since the
    last run into out; `ignore_labels` cuts clips from robot signals even where the source has labels; `depth`
    keeps the sources' depth streams (a rerun with another setting re-ingests).
    Both locations may be local folders or s3:// prefixes."""
    input_dir, out = storage.absolute(input_dir), storage.absolute(out)
    refs = adapters.discover(input_dir, formats)
    robots = _robots(refs, robot, ignore_labels)
    refs = [r for r in refs if r in robots]
    done = read_manifests(out)
    todo = []
    for ref in refs:
        cfg = robots[ref]
        m = done.get(episode_id(cfg.name, ref))
        if not (m and m.get("catalog_version") == CATALOG_VERSION and m["fingerprint"] == ref.fingerprint
                and m.get("robot_config") == config_hash(cfg) and bool(m.get("depth")) == depth):
            todo.append(ref)
    log.info("%d recordings found under %s, %d already ingested, %d to do", len(refs), input_dir,
             len(refs) - len(todo), len(todo))
    if todo:
        init_ray(address)
        task = ray.remote(num_cpus=1, max_retries=1)(ingest_episode)
        pool = TaskPool(task, ((ref.key, (ref, robots[ref], out, depth)) for ref in todo), "ingest", "episode",
                        len(todo), progress)
        for _, m in pool.results():
            if m["status"] != "ok":
                log.warning("quarantined %s: %s", m["quarantine"]["source_key"], m["reason"])
    catalog = build_catalog(out)
    per_robot, quarantined = summarize(out)
    location = out if storage.is_remote(out) else Path(out)
    return IngestResult(location, len(refs), len(todo), len(refs) - len(todo), per_robot, quarantined, catalog)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m jobs.ingest", description=__doc__.splitlines()[0])
    p.add_argument("input")
    p.add_argument("out")
    p.add_argument("--format", action="append", dest="formats", help="only these source formats")
    p.add_argument("--robot", help="robot config name or path (default: the format's own)")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else in-process)")
    p.add_argument("--ignore-source-labels", action="store_true", help="cut clips from signals even where labelled")
    p.add_argument("--depth", action="store_true", help="keep the sources' depth streams")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    r = run_ingest(a.input, a.out, a.formats, a.robot, a.address, ignore_labels=a.ignore_source_labels, depth=a.depth)
    for row in r.per_robot:
        log.info("%s: %d episodes, %.3f h, %d clips, %.1f static s dropped", row["robot"], row["episodes"],
                 row["hours"], row["clips"], row["static_s"])
    for q in r.quarantined:
        log.info("quarantined %s: %s", q["source_key"], q["reason"])
    log.info("catalog: %s", storage.join(r.out, "catalog"))


if __name__ == "__main__":
    main()
