"""Annotate benchmark: the same N recording requests (three views, frames, JSON schema) sent to one vLLM server
sequentially and with bounded concurrency, side by side; prints requests/s of both and the ratio.

    .venv/bin/python benchmarks/annotate.py [--requests 32] [--concurrency 8] [--endpoint URL --model NAME]

Without --endpoint it starts a real vLLM server on this CPU with a tiny random-weight Qwen3-VL (the vLLM venv is
built on first use, about 5 minutes). One warm-up pass sends every request first, so both timed passes meet the
same server state (compiled grammars, prefix cache).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from annotators.frames import FrameSampling, sample_frames  # noqa: E402
from annotators.proposal import schema_for  # noqa: E402
from annotators.prompt import Bounds, load_prompt, messages  # noqa: E402
from annotators.vllm_client import ChatClient, Sampling  # noqa: E402
from annotators.vllm_server import build_tiny_model, start_server  # noqa: E402
from jobs.annotate import read_requests  # noqa: E402
from jobs.ingest import run_ingest  # noqa: E402
from synth.generate import generate  # noqa: E402
from jobs.runtime import free_port  # noqa: E402


def build_requests(workdir: Path, n: int, frames: FrameSampling) -> list[tuple[list[dict], dict]]:
    """(messages, schema) for n requests, cycling over the recordings of a small generated catalog."""
    generate("aloha", 3, 5, workdir / "raw" / "aloha")
    generate("agibot", 3, 5, workdir / "raw" / "agibot")
    run_ingest(workdir / "raw", workdir / "catalog", progress=False)
    prompt, bounds, convs = load_prompt(), Bounds(), []
    for ep, req in read_requests(workdir / "catalog"):
        req.frames = sample_frames(ep, frames)
        convs.append((messages(prompt, req, bounds), schema_for(req, bounds)))
    return [convs[i % len(convs)] for i in range(n)]


async def send_all(endpoint: str, model: str, convs, concurrency: int, sampling: Sampling) -> tuple[float, int]:
    """Seconds to get every answer, and the output tokens."""
    async with ChatClient(endpoint, model, concurrency, timeout_s=600, retries=0) as client:
        t0 = time.monotonic()
        done = await asyncio.gather(*(client.complete(m, s, sampling) for m, s in convs))
        return time.monotonic() - t0, sum(c.tokens_out for c in done)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--endpoint", help="an OpenAI-compatible server; default: start the tiny vLLM server")
    ap.add_argument("--model", default=None)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vla-bench-annotate"))
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    shutil.rmtree(a.workdir, ignore_errors=True)
    convs = build_requests(a.workdir, a.requests, FrameSampling(max_samples=4, width=64, height=48))
    server = None
    if a.endpoint:
        endpoint, model = a.endpoint, a.model
    else:
        server = start_server(build_tiny_model(a.workdir / "tiny"), free_port(), a.workdir / "server.log",
                              max_num_seqs=max(8, a.concurrency))
        endpoint, model = server.url, server.model
    try:
        sampling = Sampling()
        asyncio.run(send_all(endpoint, model, convs, a.concurrency, sampling))  # warm-up
        seq_s, seq_tok = asyncio.run(send_all(endpoint, model, convs, 1, sampling))
        con_s, con_tok = asyncio.run(send_all(endpoint, model, convs, a.concurrency, sampling))
    finally:
        if server:
            server.stop()
    n = len(convs)
    images = sum(part["type"] == "image_url" for part in convs[0][0][1]["content"])
    print(f"{n} requests, {images} images each, to {model} at {endpoint}")
    print(f"sequential:      {n / seq_s:6.2f} requests/s ({seq_s:.1f} s, {seq_tok} tokens out)")
    print(f"concurrency {a.concurrency:<3} {n / con_s:6.2f} requests/s ({con_s:.1f} s, {con_tok} tokens out)")
    print(f"ratio: {seq_s / con_s:.2f}x")


if __name__ == "__main__":
    main()
