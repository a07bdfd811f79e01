"""`vla-data submit JOB ARGS --address http://HEAD:8265`: runs any `vla-data` command as a Ray job on a cluster
through the Jobs API, streams its logs, and returns its exit status.

The job's runtime environment is this project folder as the working directory (the same code runs there) and,
with `install`, the pinned dependencies of pyproject.toml, for nodes that were not set up by ray_cluster.yaml.
Storage credentials are not sent with the job: the cluster's nodes carry them in their own environment.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import sys
import time
import tomllib
from pathlib import Path

from ray.job_submission import JobStatus, JobSubmissionClient

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
# Large, local or generated paths that are not code: never uploaded with a job.
EXCLUDES = [".git", ".venv", "work", "**/__pycache__", "**/*.mp4", "**/*.hdf5", "**/*.parquet"]


def runtime_env(install: bool) -> dict:
    env: dict = {"working_dir": str(REPO), "excludes": EXCLUDES}
    if install:
        env["pip"] = {"packages": tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    return env


def _client(address: str, wait_s: float = 60) -> JobSubmissionClient:
    """The head's job agent registers a little after its dashboard answers: retry the connection briefly."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return JobSubmissionClient(address)
        except ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


async def _stream(client: JobSubmissionClient, job_id: str) -> None:
    async for lines in client.tail_job_logs(job_id):
        sys.stdout.write(lines)
        sys.stdout.flush()


def submit(command: list[str], address: str, install: bool = False) -> int:
    """Submits `vla-data COMMAND...` and follows it to the end; the job's exit status (0 on success)."""
    client = _client(address)
    entrypoint = shlex.join(["python", "-m", "jobs.cli", *command])
    for attempt in range(30):  # "No available agent to submit job": the head is still starting its agent
        try:
            job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env(install))
            break
        except RuntimeError as e:
            if "No available agent" not in str(e) or attempt == 29:
                raise
            time.sleep(2)
    log.info("submitted %s as %s to %s", entrypoint, job_id, address)
    asyncio.run(_stream(client, job_id))
    info = client.get_job_info(job_id)
    log.info("job %s %s", job_id, info.status.value.lower())
    if info.driver_exit_code is not None:
        return info.driver_exit_code
    return 0 if info.status == JobStatus.SUCCEEDED else 1
