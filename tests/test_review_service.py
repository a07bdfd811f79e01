"""A real Label Studio server (its own venv, built once by scripts/venv.sh): one start for the whole module."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from typer.testing import CliRunner

from jobs.review_cli import app
from pipeline import labelstudio_service as ls
from jobs.runtime import free_port

pytestmark = pytest.mark.timeout(900)  # a cold start (venv build + DB migrations) takes minutes on 2 cores
log = logging.getLogger(__name__)


def _status(url: str, token: str) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("review")
    with pytest.MonkeyPatch.context() as mp:
        for name in (ls.TOKEN_ENV, ls.PASSWORD_ENV):  # test the generated-secret path
            mp.delenv(name, raising=False)
        try:
            t0 = time.monotonic()
            service = ls.up(work, free_port())
            log.info("cold start to /health 200: %.1f s", time.monotonic() - t0)
            yield work, service
        finally:
            ls.down(work)


def test_health_and_token_auth(server):
    work, s = server
    with urllib.request.urlopen(f"{s.url}/health", timeout=30) as r:
        assert r.status == 200
    assert _status(f"{s.url}/api/projects", ls.token(work)) == 200
    assert _status(f"{s.url}/api/projects", "not-the-token-0123456789") == 401


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs iproute2's ss")
def test_listens_only_on_loopback(server):
    _, s = server
    lines = subprocess.run(["ss", "-ltunpH"], check=True, capture_output=True, text=True).stdout.splitlines()
    local = [line.split()[4] for line in lines if f"pid={s.pid}," in line]
    assert local == [s.url.removeprefix("http://")]


def test_second_up_is_idempotent_and_keeps_the_token_private(server):
    work, s = server
    result = CliRunner().invoke(app, ["up", "--work", str(work), "--port", s.url.rsplit(":", 1)[1]])
    assert result.exit_code == 0, result.output
    assert f"pid {s.pid}" in result.output and s.url in result.output and str(s.token_path) in result.output
    secret = ls.token(work)
    assert secret not in result.output and secret not in s.log_path.read_text()
    for path in (s.token_path, s.password_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_up_refuses_a_busy_port(server, tmp_path):
    _, s = server
    port = int(s.url.rsplit(":", 1)[1])
    with pytest.raises(ls.ServiceError, match=f"port {port} .* in use"):
        ls.up(tmp_path, port)
    result = CliRunner().invoke(app, ["up", "--work", str(tmp_path), "--port", str(port)])
    assert result.exit_code == 2 and "in use" in result.output
    assert not ls.is_running(tmp_path)


def test_down_stops_it(server):
    work, s = server
    assert ls.down(work)
    with pytest.raises(ProcessLookupError):
        os.killpg(s.pid, 0)
    assert not (work / "labelstudio" / "server.pid").exists() and not ls.is_running(work)
    assert not ls.down(work)
