"""A real multi-node Ray cluster on 127.0.0.1 (a head and a worker node, each its own `ray start` process group
with its own resources), jobs submitted through the Jobs API with `vla-data submit`, inputs and outputs in a
local S3 server (moto), a worker node killed mid-job, and ray_cluster.yaml checked by Ray's own validation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from jobs.runtime import ServiceProcess, free_port, http_answers, start_service
from pipeline import s3_service, storage
from pipeline.catalog import attach_datasets, connect
from pipeline.stats_report import report
from tests.conftest import EPISODES, SAMPLE_FORMATS

RECORDINGS = len(SAMPLE_FORMATS) * EPISODES
ROBOTS = ("aloha", "agibot_g1")
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BUCKET = "vla"
# Columns that name where a file lives (local folder vs s3:// prefix) or derive from it: episode ids, and the
# recording time of clock-less ALOHA files (their mtime; an uploaded object's is its upload time).
LOCATION_COLUMNS = ["episode_id", "source_uri", "frames_uri", "cameras", "recorded_at"]


def _node(args: list[str], log: Path, ready, env: dict) -> ServiceProcess:
    ports = {flag: free_port() for flag in ("node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
                                            "dashboard-agent-grpc-port", "runtime-env-agent-port",
                                            "metrics-export-port")}
    low = free_port()
    cmd = [str(BIN / "ray"), "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1",
           *args, *(f"--{flag}={p}" for flag, p in ports.items()),
           f"--min-worker-port={low}", f"--max-worker-port={low + 40}"]
    return start_service(cmd, log, ready, f"ray node ({log.stem})", env, timeout=180)


def _nodes_alive(url: str) -> int:
    from ray.util.state import list_nodes

    try:
        return sum(n.state == "ALIVE" for n in list_nodes(address=url))
    except Exception:  # not serving yet
        return 0


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = s3_service.start(free_port(), tmp_path_factory.mktemp("s3") / "moto.log")
    try:
        server.create_bucket(BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster(s3, tmp_path_factory):
    """(dashboard URL, environment for `vla-data submit`, start_worker): the head holds 1 CPU, the worker 1."""
    logs = tmp_path_factory.mktemp("ray")
    env = {**os.environ, **s3.env, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_AUTH_MODE": "token"}
    gcs, dash = free_port(), free_port()
    url = f"http://127.0.0.1:{dash}"
    nodes = [_node(["--head", f"--port={gcs}", f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1",
                    f"--ray-client-server-port={free_port()}", "--num-cpus=1", f"--temp-dir={logs / 'tmp'}"],
                   logs / "head.log", lambda: http_answers(f"{url}/api/version"), env)]

    def start_worker() -> ServiceProcess:
        alive = _nodes_alive(url)
        node = _node([f"--address=127.0.0.1:{gcs}", "--num-cpus=1", '--resources={"worker_node": 1}'],
                     logs / f"worker{len(nodes)}.log", lambda: _nodes_alive(url) > alive, env)
        nodes.append(node)
        return node

    try:
        start_worker()
        yield url, env, start_worker
    finally:
        for node in reversed(nodes):  # workers first, by PID, whatever happened in the tests
            node.stop(timeout=60)


def _submit(url: str, env: dict, *command: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "vla-data"), "submit", *command, "--address", url], env=env, text=True,
                          capture_output=True, timeout=timeout, cwd=REPO)


def _catalog(root: str, name: str):
    return pq.read_table(storage.join(root, "catalog", f"{name}.parquet"))


def _same_catalog(remote: str, local: Path) -> None:
    """Equal tables once file locations (and the episode ids derived from them) are set aside."""
    for root in (remote, str(local)):
        assert _catalog(root, "episodes").num_rows == len(set(_catalog(root, "episodes")["source_key"].to_pylist()))
    mine, theirs = (_catalog(r, "episodes").sort_by("source_key") for r in (remote, str(local)))
    assert mine.drop(LOCATION_COLUMNS).equals(theirs.drop(LOCATION_COLUMNS))
    clocked = [i for i, f in enumerate(mine["source_format"].to_pylist()) if f == "agibot"]
    assert mine["recorded_at"].take(clocked).equals(theirs["recorded_at"].take(clocked))
    assert [[c["num_frames"] for c in cams] for cams in mine["cameras"].to_pylist()] == \
        [[c["num_frames"] for c in cams] for cams in theirs["cameras"].to_pylist()]
    for root in (remote, str(local)):
        assert all(u.startswith(storage.join(root, "episodes")) for u in _catalog(root, "episodes")["frames_uri"].to_pylist())
    key = {r: dict(zip(*(_catalog(r, "episodes")[c].to_pylist() for c in ("episode_id", "source_key"))))
           for r in (remote, str(local))}
    for name in ("clips", "static_spans"):
        a, b = (_catalog(r, name) for r in (remote, str(local)))
        a, b = (t.append_column("source_key", [[key[r][e] for e in t["episode_id"].to_pylist()]])
                .drop([c for c in ("episode_id", "clip_id") if c in t.column_names]) for t, r in ((a, remote), (b, str(local))))
        order = [("source_key", "ascending"), (a.column_names[0], "ascending")]
        assert a.sort_by(order).equals(b.sort_by(order)), name


def test_ray_cluster_yaml_passes_rays_own_validation():
    from jsonschema import ValidationError
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())
    validate_config(prepare_config(config))  # what `ray up` runs before it launches anything
    types = config["available_node_types"]
    assert types["head"]["resources"]["CPU"] == 0 and types["gpu_worker"]["resources"]["GPU"] == 1
    assert types["cpu_worker"]["max_workers"] > types["cpu_worker"]["min_workers"] == 0
    config["available_node_types"]["cpu_worker"]["max_worker"] = 3  # a typo Ray must reject
    with pytest.raises(ValidationError):
        validate_config(prepare_config(config))


@pytest.fixture(scope="module")
def remote_run(cluster, s3, samples) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """Ingest then export submitted to the cluster, raw recordings and outputs in S3: s3://vla/{raw,out,lerobot}."""
    url, env, _ = cluster
    os.environ.update(s3.env)  # this process reads the results back
    storage.upload_tree(samples, f"s3://{BUCKET}/raw")
    ingest = _submit(url, env, "ingest", f"s3://{BUCKET}/raw", f"s3://{BUCKET}/out")
    assert ingest.returncode == 0, (ingest.stdout + ingest.stderr)[-4000:]
    export = _submit(url, env, "export", f"s3://{BUCKET}/out", f"s3://{BUCKET}/lerobot", "--codec", "h264",
                     "--size", "160x120")
    assert export.returncode == 0, (export.stdout + export.stderr)[-4000:]
    return ingest, export


@pytest.mark.cluster
def test_s3_ingest_and_export_on_a_multinode_cluster_match_the_embedded_run(remote_run, exported):
    catalog_root, datasets, _ = exported
    r = remote_run[0]
    assert "Quarantined: none" in r.stdout and f"s3://{BUCKET}/out/catalog" in r.stdout
    _same_catalog(f"s3://{BUCKET}/out", catalog_root)
    uris = [c["uri"] for cams in _catalog(f"s3://{BUCKET}/out", "episodes")["cameras"].to_pylist() for c in cams]
    assert all(u.startswith(f"s3://{BUCKET}/") for u in uris)  # AgiBot videos stay in raw/, ALOHA's in out/
    remote, local = (report(connect(root)) for root in (f"s3://{BUCKET}/out", catalog_root))  # SQL over S3 too
    for section in ("recordings", "clip_lengths", "joint_ranges", "quarantine", "funnel"):
        assert remote[section].equals(local[section]), section

    for robot in ROBOTS:
        remote, local = f"s3://{BUCKET}/lerobot/{robot}", datasets / robot
        files = storage.list_files(remote)
        assert sorted(files) == sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
        for f in files:
            if f.endswith(".parquet"):
                assert pq.read_table(storage.join(remote, f)).equals(pq.read_table(local / f)), f
            elif f.endswith(".mp4"):
                assert storage.read_bytes(storage.join(remote, f)) == (local / f).read_bytes(), f
        info = json.loads(storage.read_bytes(storage.join(remote, "meta/info.json")))
        assert info == json.loads((local / "meta" / "info.json").read_text())
    assert not any(".staging" in f for f in storage.list_files(f"s3://{BUCKET}/lerobot"))
    query = """SELECT dataset, count(*) AS frames, sum(frame_index) AS f, (SELECT sum(episodes) FROM export_reports) AS e
               FROM shard_frames GROUP BY dataset ORDER BY dataset"""
    answers = []
    for root, ds in ((f"s3://{BUCKET}/out", f"s3://{BUCKET}/lerobot"), (catalog_root, datasets)):
        con = connect(root)
        attach_datasets(con, ds)
        answers.append(con.sql(query).fetchall())
    assert answers[0] == answers[1] and len(answers[0]) == len(ROBOTS)


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    r = subprocess.run([str(BIN / "vla-data"), *args], env=env, text=True, capture_output=True, timeout=900, cwd=REPO)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return r


@pytest.mark.cluster
def test_every_command_takes_s3_locations(remote_run, s3, exported, tmp_path):
    """annotate, validate, norm-stats, merge, stats frames, train, the dashboard's media and the review store, each
    on the cluster run's S3 outputs, give what they give on the embedded run's local ones."""
    catalog_root, datasets, _ = exported
    env = {**os.environ, **s3.env, "VLA_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    env.pop("VLA_VLM_ENDPOINT", None)
    out, lerobot = f"s3://{BUCKET}/out", f"s3://{BUCKET}/lerobot"

    _cli("annotate", out, "--backend", "rules", env=env)
    proposals = pq.read_table(storage.join(out, "catalog", "proposals.parquet"))
    assert proposals.num_rows == _catalog(out, "episodes").num_rows and all(proposals["is_current"].to_pylist())
    assert len(storage.list_files(storage.join(out, "_proposals"))) == 2 * proposals.num_rows  # record + current

    _cli("validate", f"{lerobot}/aloha", env=env)
    _cli("norm-stats", f"{lerobot}/aloha", "--out", f"{lerobot}/aloha/norm_stats.json", "--subtract-state",
         "arm.position", env=env)
    _cli("norm-stats", str(datasets / "aloha"), "--out", str(tmp_path / "local_norm_stats.json"), "--subtract-state",
         "arm.position", env=env)
    assert storage.read_json(f"{lerobot}/aloha/norm_stats.json") == json.loads((tmp_path / "local_norm_stats.json").read_text())

    _cli("merge", f"{lerobot}/aloha", f"{lerobot}/aloha", f"s3://{BUCKET}/merged", env=env)
    merged = storage.read_json(f"s3://{BUCKET}/merged/meta/info.json")
    single = json.loads((datasets / "aloha" / "meta" / "info.json").read_text())
    assert merged["total_episodes"] == 2 * single["total_episodes"] and merged["total_frames"] == 2 * single["total_frames"]

    remote, local = (json.loads(_cli("stats", "frames", d, "--format", "json", env=env).stdout) for d in (lerobot, str(datasets)))
    assert remote == local

    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "datasets": [{"path": f"{lerobot}/aloha"}], "output_dir": f"s3://{BUCKET}/train",
        "model": {"image_size": 16, "patch_size": 8, "width": 32, "depth": 2, "heads": 2, "max_text_len": 16,
                  "num_steps": 4},
        "steps": 2, "micro_batch": 2, "warmup_steps": 1, "num_workers": 0, "save_every": 1, "log_every": 1}))
    _cli("train", str(config), env=env)
    run = storage.list_files(f"s3://{BUCKET}/train")
    assert storage.read_bytes(f"s3://{BUCKET}/train/checkpoints/latest").decode().strip() == "step-00000002"
    assert {"export/model.safetensors", "metrics.jsonl"} <= set(run) and any(f.startswith("checkpoints/step-00000002/") for f in run)

    os.environ.update(s3.env)
    from dashboards.app import create_app
    client = create_app(out).server.test_client()
    ep = _catalog(out, "episodes").to_pylist()[0]
    top = next(c["uri"] for c in ep["cameras"] if c["role"] == "top")
    got = client.get(f"/media/{ep['episode_id']}/top", headers={"Range": "bytes=0-99"})
    assert got.status_code == 206 and got.data == storage.read_bytes(top)[:100]

    from pipeline import review_store
    review_store.save(review_store.task_path(out, ep["episode_id"]), {"episode_id": ep["episode_id"], "task_id": 7})
    assert review_store.task_records(out) == {ep["episode_id"]: {"episode_id": ep["episode_id"], "task_id": 7}}


@pytest.mark.cluster
def test_worker_node_killed_mid_job_then_rerun_has_every_episode_once(cluster, s3, samples, ingested):
    url, env, start_worker = cluster
    os.environ.update(s3.env)
    raw, out = f"s3://{BUCKET}/raw-kill", f"s3://{BUCKET}/out-kill"
    storage.upload_tree(samples, raw)
    victim = start_worker()  # a fresh node to kill (the first test may have used the first one)
    result: dict = {}
    job = threading.Thread(target=lambda: result.update(run=_submit(url, env, "ingest", raw, out)))
    job.start()
    deadline = time.monotonic() + 600
    while len(storage.list_files(f"{out}/_manifests")) < 2 and job.is_alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    done_before = len(storage.list_files(f"{out}/_manifests"))
    victim.stop(timeout=0)  # SIGKILL to the node's raylet, object store and workers: a machine gone
    job.join(900)
    first = result["run"]
    assert done_before < RECORDINGS, "the job finished before the node could be killed"
    # Ray retried the lost tasks on the remaining node, or the job failed and says why.
    assert first.returncode == 0 or "Error" in first.stdout + first.stderr, (first.stdout + first.stderr)[-4000:]
    print(f"node killed after {done_before} of {RECORDINGS} manifests; first run exit {first.returncode}")
    rerun = _submit(url, env, "ingest", raw, out)
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-4000:]
    manifests = storage.list_files(f"{out}/_manifests")
    episodes = _catalog(out, "episodes")
    assert len(manifests) == episodes.num_rows == len(episodes["episode_id"].unique()) == RECORDINGS
    _same_catalog(out, ingested.out)
