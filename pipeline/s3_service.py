"""A local S3-compatible endpoint for tests and trials: moto's server mode, from its own cached virtualenv
(scripts/venv.sh s3), bound to 127.0.0.1 and stopped by PID. The jobs find it the way they find any S3 store,
through AWS_ENDPOINT_URL and the AWS_* credentials in their environment (`S3Server.env`)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from jobs.runtime import ServiceProcess, http_answers, start_service

REPO = Path(__file__).resolve().parents[1]


def s3_venv() -> Path:
    out = subprocess.run(["bash", str(REPO / "scripts" / "venv.sh"), "s3"], check=True, stdout=subprocess.PIPE,
                         text=True)
    return Path(out.stdout.strip())


@dataclass
class S3Server:
    service: ServiceProcess
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a job needs in its environment to use this server (moto accepts any credentials)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_REGION": "us-east-1"}

    def create_bucket(self, name: str) -> None:
        pafs.S3FileSystem(endpoint_override=self.endpoint, access_key="local", secret_key="local",
                          region="us-east-1", allow_bucket_creation=True).create_dir(name)

    def stop(self) -> None:
        self.service.stop(timeout=20)


def start(port: int, log_path: Path) -> S3Server:
    venv = s3_venv()
    service = start_service([str(venv / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], log_path,
                            lambda: http_answers(f"http://127.0.0.1:{port}/"), "moto S3 server")
    return S3Server(service, port)
