"""The ingest job submitted through the Ray Jobs API to a real head node (started and stopped by PID)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs.runtime import free_port

BIN = Path(sys.executable).parent
PATH_COLUMNS = ("source_uri", "frames_uri", "cameras")  # these name the output folder, which differs


@pytest.fixture
def head_node(tmp_path):
    # Every port is chosen free: the session's in-process Ray already holds Ray's default agent ports.
    ports = {flag: free_port() for flag in ("port", "dashboard-port", "dashboard-agent-listen-port",
                                              "dashboard-agent-grpc-port", "runtime-env-agent-port",
                                              "metrics-export-port", "ray-client-server-port")}
    dash = ports["dashboard-port"]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--dashboard-host=127.0.0.1", "--num-cpus=2",
         "--disable-usage-stats", *(f"--{flag}={p}" for flag, p in ports.items())],
        env=env, stdout=open(tmp_path / "head.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{url}/api/version", timeout=2)
                break
            except urllib.error.HTTPError:  # it answers (401 while token auth is on): it is up
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "head.log").read_text()[-3000:]
                time.sleep(1)
        else:
            raise TimeoutError("Ray head did not serve its dashboard within 120 s")
        yield url, env
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # `ray start --block` stops the node's processes on SIGTERM
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.cluster
def test_submitted_job_matches_the_embedded_run(head_node, samples, ingested, tmp_path):
    url, env = head_node
    out = tmp_path / "out"
    for _ in range(30):  # the head's job agent registers a little after the dashboard answers
        proc = subprocess.run(
            [str(BIN / "ray"), "job", "submit", "--address", url, "--",
             sys.executable, "-m", "jobs.ingest", str(samples), str(out)],
            env={**env, "RAY_AUTH_MODE": "token"}, capture_output=True, text=True, timeout=600)
        if "No available agent" not in proc.stderr:
            break
        time.sleep(2)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "succeeded" in proc.stdout + proc.stderr
    for name in ("clips", "static_spans"):
        assert pq.read_table(out / "catalog" / f"{name}.parquet").equals(
            pq.read_table(ingested.out / "catalog" / f"{name}.parquet")), name
    mine, embedded = (pq.read_table(p / "catalog" / "episodes.parquet").drop(list(PATH_COLUMNS))
                      for p in (out, ingested.out))
    assert mine.equals(embedded)
