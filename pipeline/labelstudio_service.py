"""One local Label Studio server per work folder: the human-review queue (`vla-data review up|down`).

Layout under WORK/labelstudio/ (mode 0700):
    data/        LS data dir: SQLite DB, uploads, exports, its SECRET_KEY (.env) -- keep it, it signs sessions
    media/       the only folder LS may serve local files from (/data/local-files/?d=...)
    token        API token of the admin user (0600), unless VLA_LABEL_STUDIO_TOKEN is set
    password     password of the admin user (0600), unless VLA_LABEL_STUDIO_PASSWORD is set
    server.log   server stdout/stderr of the last start; server.url; server.pid while it runs

LS applies the admin user, its password and token only when it creates the user, i.e. on the first start
of a data dir: changing the env vars later has no effect on an existing data dir.
The server runs from its own venv (configs/venvs/labelstudio.txt): its pins clash with ours.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
ADMIN_EMAIL = "vla-data@localhost"
TOKEN_ENV, PASSWORD_ENV = "VLA_LABEL_STUDIO_TOKEN", "VLA_LABEL_STUDIO_PASSWORD"


class ServiceError(RuntimeError):
    pass


@dataclass(frozen=True)
class Service:
    url: str
    pid: int
    token_path: Path | None  # None when the token comes from $VLA_LABEL_STUDIO_TOKEN
    log_path: Path
    password_path: Path | None  # the admin's password for the web UI; None when from $VLA_LABEL_STUDIO_PASSWORD


def _home(work: Path) -> Path:
    return Path(work).resolve() / "labelstudio"


def _secret(work: Path, name: str, env: str) -> str:
    """The env var if set, else WORK/labelstudio/NAME, created once with a random value and mode 0600."""
    if os.environ.get(env):
        return os.environ[env]
    path = _home(work) / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(20))  # 40 chars: the longest key DRF's Token table takes
    return path.read_text().strip()


def ls_venv() -> Path:
    """The Label Studio virtualenv (server and SDK), built on first use."""
    try:
        return Path(subprocess.run([str(REPO / "scripts/venv.sh"), "labelstudio"], check=True, text=True,
                                   stdout=subprocess.PIPE).stdout.strip())
    except subprocess.CalledProcessError as e:
        raise ServiceError(f"could not build the labelstudio venv (scripts/venv.sh exit {e.returncode})") from None


def media_dir(work: Path) -> Path:
    """The only folder the server serves local files from."""
    return _home(work) / "media"


def server_url(work: Path) -> str:
    path = _home(work) / "server.url"
    if not path.exists():
        raise ServiceError(f"no Label Studio was started for {work}: run `vla-data review up --work {work}`")
    return path.read_text().strip()


def token(work: Path) -> str:
    """The admin's API token, for `Authorization: Token <token>`; $VLA_LABEL_STUDIO_TOKEN wins."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    path = _home(work) / "token"
    if not path.exists():
        raise ServiceError(f"no API token: set ${TOKEN_ENV}, or start the server first "
                           f"(vla-data review up --work {work}) so that it writes {path}")
    return path.read_text().strip()


def _running_pid(work: Path) -> int | None:
    """PID from server.pid if that process is still our server (guards against a reused PID)."""
    try:
        pid = int((_home(work) / "server.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ValueError):
        return None
    return pid if b"label-studio" in cmdline and _group_alive(pid) else None


def _group_alive(pgid: int) -> bool:
    try:
        os.waitpid(pgid, os.WNOHANG)  # reap it if it is our own child, else a zombie counts as alive
    except ChildProcessError:
        pass
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def is_running(work: Path) -> bool:
    return _running_pid(work) is not None


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Django's runserver binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
            return r.status == 200
    except OSError:  # refused, timed out, or an HTTP error status
        return False


def _wait_healthy(work: Path, pid: int, url: str, port: int, timeout: float) -> None:
    log_path = _home(work) / "server.log"
    deadline = time.monotonic() + timeout
    while not _healthy(url):
        # LS silently moves to port+1 if the port was taken after our check: never accept that.
        if f"Port {port} is in use" in _tail(log_path, 100_000):
            why = f"port {port} was taken"
        elif not _group_alive(pid):
            why = "it exited"
        elif time.monotonic() > deadline:
            why = f"no /health 200 within {timeout:.0f} s"
        else:
            time.sleep(1)
            continue
        down(work)
        raise ServiceError(f"Label Studio did not start ({why}); end of {log_path}:\n{_tail(log_path)}")


def _service(work: Path, pid: int) -> Service:
    home = _home(work)
    return Service((home / "server.url").read_text().strip(), pid,
                   None if os.environ.get(TOKEN_ENV) else home / "token", home / "server.log",
                   None if os.environ.get(PASSWORD_ENV) else home / "password")


def up(work: Path, port: int = 8089, timeout: float = 600) -> Service:
    """Start the server for WORK (or return the one already running) and wait until /health answers 200.

    A first start runs all DB migrations: ~30 s on an idle 2-core box, minutes under load; a restart ~5-20 s.
    """
    home = _home(work)
    if (pid := _running_pid(work)) is not None:
        service = _service(work, pid)
        log.info("Label Studio for %s already running at %s (pid %d)", work, service.url, pid)
        _wait_healthy(work, pid, service.url, int(service.url.rsplit(":", 1)[1]), timeout)
        return service
    if not _port_free(port):
        raise ServiceError(f"port {port} on 127.0.0.1 is in use; stop what holds it or pick another --port")
    if os.environ.get(TOKEN_ENV) and not 5 < len(os.environ[TOKEN_ENV]) <= 40:
        raise ServiceError(f"${TOKEN_ENV} must be 6 to 40 characters")  # else LS ignores it (and logs it)
    venv = ls_venv()

    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    (home / "media").mkdir(exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(home / "data"),
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(home / "media"),
        # Secrets go by env, not argv (argv is world-readable in /proc). The prefixed names win over a
        # stray plain USERNAME/PASSWORD, which LS would also read.
        "LABEL_STUDIO_USERNAME": ADMIN_EMAIL,
        "LABEL_STUDIO_PASSWORD": _secret(work, "password", PASSWORD_ENV),
        "LABEL_STUDIO_USER_TOKEN": _secret(work, "token", TOKEN_ENV),
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",  # only the admin we create can log in
        "LABEL_STUDIO_DEBUG": "false",  # pinned: DEBUG would log SQL (the token too) and serve tracebacks
        # Nothing leaves the machine: no error reports, analytics or version checks.
        "LABEL_STUDIO_SENTRY_DSN": "",
        "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
        "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
        "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
    }
    # --internal-host: the bind address, 0.0.0.0 by default; with it the server's only socket is
    # 127.0.0.1:PORT/tcp (checked with `ss` in tests). --enable-legacy-api-token: without it
    # (applied when the organisation is created) `Authorization: Token` gets 401 in LS 1.23.
    cmd = [f"{venv}/bin/label-studio", "start", "--no-browser", "--internal-host", "127.0.0.1",
           "--port", str(port), "--host", url, "--enable-legacy-api-token", "--log-level", "INFO"]
    log_path = home / "server.log"
    with open(log_path, "w") as out:
        # Own session/process group: `down` signals the whole tree, and Ctrl-C in our shell doesn't reach it.
        # The server outlives this process by design (Popen warns so only under -W error::ResourceWarning).
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    (home / "server.url").write_text(url + "\n")
    (home / "server.pid").write_text(f"{proc.pid}\n")
    log.info("starting Label Studio for %s at %s (pid %d, log %s)", work, url, proc.pid, log_path)
    t0 = time.monotonic()
    _wait_healthy(work, proc.pid, url, port, timeout)
    log.info("Label Studio up after %.0f s", time.monotonic() - t0)
    return _service(work, proc.pid)


def down(work: Path, grace: float = 30) -> bool:
    """Stop WORK's server: SIGTERM to its process group, SIGKILL after `grace` s. False if none was running."""
    pid_file = _home(work) / "server.pid"
    pid = _running_pid(work)
    if pid is not None:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _group_alive(pid):
            log.warning("Label Studio (pid %d) ignored SIGTERM for %.0f s; killing it", pid, grace)
            os.killpg(pid, signal.SIGKILL)
            while _group_alive(pid):
                time.sleep(0.1)
        log.info("stopped Label Studio for %s (pid %d)", work, pid)
    pid_file.unlink(missing_ok=True)
    return pid is not None
