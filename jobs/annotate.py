"""Ray job: catalog clips -> task and subtask instruction proposals (OUT/catalog/proposals*.parquet).

`vla-data annotate CATALOG [--backend vllm|vllm-inproc|rules] [--endpoint URL] [--model NAME] [--concurrency N]`

Backends: `vllm` talks to any OpenAI-compatible server (frames are sampled by Ray tasks while an async client
keeps up to N requests in flight); `vllm-inproc` runs vLLM engines inside Ray workers through Ray Data LLM;
`rules` proposes from robot signals alone. A proposal whose inputs, prompt, model and sampling are unchanged is
reused, so a rerun makes no requests for finished recordings and retries the pending ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pyarrow.parquet as pq
import ray
from tqdm import tqdm

from annotators import rules, store
from annotators.frames import FrameSampling, sample_frames
from annotators.prompt import DEFAULT_PROMPT, Bounds, RecordingRequest, Span, load_prompt
from annotators.proposal import Proposal, skeleton_spans
from annotators.vllm_client import ChatClient, Sampling
from annotators.vlm import cache_key, propose
from jobs.runtime import TaskPool, init_ray
from pipeline import storage
from pipeline.catalog import CATALOG_DIR
from schemas.robot import load_robot

log = logging.getLogger(__name__)
BACKENDS = ("vllm", "vllm-inproc", "rules")
INPROC_ROUND = 2048  # recordings per vllm-inproc round: each round starts its engines once


@dataclass
class AnnotateReport:
    backend: str
    model: str
    prompt_version: str
    recordings: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    cached: int = 0  # proposals reused without a request
    requests: int = 0  # chat requests sent by this run, retries and repairs included
    tokens_in: int = 0
    tokens_out: int = 0
    elapsed_s: float = 0.0
    pending: list[tuple[str, str]] = field(default_factory=list)  # (episode_id, reason)
    tables: dict[str, str] = field(default_factory=dict)

    def add(self, p: Proposal, cached: bool) -> None:
        self.recordings += 1
        self.by_status[p.status] = self.by_status.get(p.status, 0) + 1
        self.cached += cached
        if not cached:
            self.tokens_in += p.tokens_in
            self.tokens_out += p.tokens_out
        if p.status == "pending":
            self.pending.append((p.episode_id, p.reason or ""))


def read_requests(root: str, robot: str | None = None, limit: int | None = None) -> list[tuple[dict, RecordingRequest]]:
    """(catalog episode row, request without frames) per recording that has clips, in catalog order."""
    cat = storage.join(root, CATALOG_DIR)
    if not storage.exists(storage.join(cat, "episodes.parquet")):
        raise FileNotFoundError(f"{root} has no catalog: run `vla-data ingest` into it first")
    clips: dict[str, list[Span]] = {}
    for c in storage.read_table(storage.join(cat, "clips.parquet")).sort_by([("episode_id", "ascending"),
                                                            ("clip_index", "ascending")]).to_pylist():
        clips.setdefault(c["episode_id"], []).append(Span(c["start_frame"], c["end_frame"], c["start_s"], c["end_s"],
                                                          c["clip_id"]))
    out = []
    for ep in storage.read_table(storage.join(cat, "episodes.parquet")).to_pylist():
        if (robot and ep["robot"] != robot) or ep["episode_id"] not in clips:
            continue
        out.append((ep, RecordingRequest(ep["episode_id"], ep["robot"], ep["fps"], ep["duration_s"],
                                         clips[ep["episode_id"]], ep["task_name"])))
    return out[:limit] if limit else out


def _rules_proposal(ep: dict, req: RecordingRequest) -> Proposal:
    key = hashlib.sha256(json.dumps([rules.RULES_VERSION, ep["content_hash"], req.task_name,
                                     [(s.start_frame, s.end_frame) for s in req.spans]]).encode()).hexdigest()[:24]
    state = pq.read_table(ep["frames_uri"], columns=["observation.state"]).column("observation.state")
    state = state.combine_chunks().flatten().to_numpy().reshape(len(state), -1)
    task, texts = rules.propose(state, req.spans, load_robot(ep["robot"]), req.task_name)
    return Proposal(key, req.episode_id, req.robot, "rules", "rules", rules.RULES_VERSION, rules.RULES_VERSION, "ok",
                    None, task, None, skeleton_spans(req.spans, texts))


def _annotate_rules(out: str, items, report: AnnotateReport, progress: bool) -> None:
    for ep, req in tqdm(items, desc="annotate (rules)", unit="recording", disable=not progress):
        p = _rules_proposal(ep, req)
        old = store.reuse(out, p.episode_id, p.proposal_id)
        if old is None:
            store.save(out, p)
        report.add(old or p, old is not None)


async def _annotate_http(out: str, items, client: ChatClient, concurrency: int, prompt, frames: FrameSampling,
                         sampling: Sampling, bounds: Bounds, report: AnnotateReport, progress: bool) -> None:
    sample = ray.remote(num_cpus=1)(sample_frames)
    # Recordings in flight (their frames in memory): enough to keep `concurrency` requests busy.
    in_flight = asyncio.Semaphore(2 * concurrency)

    async def one(ep: dict, req: RecordingRequest) -> tuple[Proposal, bool]:
        async with in_flight:
            req.frames = await sample.remote(ep, frames)
            key = cache_key(req, prompt.version, client.model, sampling, bounds)
            if (old := store.reuse(out, req.episode_id, key)) is not None:
                return old, True
            p = await propose(client, prompt, req, bounds, sampling, key)
            req.frames = []
            store.save(out, p)
            return p, False

    tasks = [asyncio.create_task(one(ep, req)) for ep, req in items]
    with tqdm(total=len(tasks), desc=f"annotate ({client.model})", unit="recording", disable=not progress) as bar:
        for fut in asyncio.as_completed(tasks):
            p, cached = await fut
            report.add(p, cached)
            bar.update(1)
            if p.status == "pending":
                log.warning("%s pending: %s", p.episode_id, p.reason)


async def served_model(endpoint: str) -> str:
    """The first model the server lists (what `vllm serve --served-model-name` set)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        async with s.get(endpoint.rstrip("/") + "/models") as r:
            r.raise_for_status()
            return (await r.json())["data"][0]["id"]


def _annotate_inproc(out: str, items, model: str, prompt, frames: FrameSampling, sampling: Sampling, bounds: Bounds,
                     engine: dict, concurrency: int, report: AnnotateReport, progress: bool) -> None:
    """In rounds of INPROC_ROUND recordings, so the driver holds one round's sampled frames, not the corpus's."""
    from annotators.inproc import propose_batch

    sample = ray.remote(num_cpus=1)(sample_frames)
    for start in range(0, len(items), INPROC_ROUND):
        round_items = items[start:start + INPROC_ROUND]
        pool = TaskPool(sample, ((i, (ep, frames)) for i, (ep, _) in enumerate(round_items)), "sample frames",
                        "recording", len(round_items), progress)
        todo = {}
        for i, fr in pool.results():
            req = round_items[i][1]
            req.frames = fr
            key = cache_key(req, prompt.version, model, sampling, bounds)
            if (old := store.reuse(out, req.episode_id, key)) is not None:
                report.add(old, True)
            else:
                todo[key] = req
        for p in propose_batch(todo, prompt, bounds, sampling, model, engine, concurrency) if todo else []:
            store.save(out, p)
            report.add(p, False)
            report.requests += p.requests


def run_annotate(root: str | Path, backend: str = "rules", endpoint: str | None = None, model: str | None = None,
                 concurrency: int = 8, prompt_name: str = DEFAULT_PROMPT, frames: FrameSampling = FrameSampling(),
                 sampling: Sampling = Sampling(), bounds: Bounds = Bounds(), robot: str | None = None,
                 limit: int | None = None, address: str | None = None, timeout_s: float = 300, retries: int = 4,
                 engine: dict | None = None, progress: bool = True) -> AnnotateReport:
    """Proposes task and subtask instructions for every recording of the catalog at `root`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    root = storage.absolute(root)
    items = read_requests(root, robot, limit)
    t0 = time.monotonic()
    if backend == "rules":
        report = AnnotateReport("rules", rules.RULES_VERSION, rules.RULES_VERSION)
        _annotate_rules(root, items, report, progress)
    elif backend == "vllm":
        if not endpoint:
            raise ValueError("the vllm backend needs --endpoint (or VLA_VLM_ENDPOINT), e.g. http://HOST:8000/v1")
        prompt = load_prompt(prompt_name)

        async def main() -> AnnotateReport:
            name = model or await served_model(endpoint)
            report = AnnotateReport("vllm", name, prompt.version)
            async with ChatClient(endpoint, name, concurrency, timeout_s, retries) as client:
                await _annotate_http(root, items, client, concurrency, prompt, frames, sampling, bounds, report, progress)
                report.requests = client.requests
            return report

        init_ray(address)
        report = asyncio.run(main())
    else:
        if not model:
            raise ValueError("the vllm-inproc backend needs --model (a model path or hub id on the GPU nodes)")
        prompt = load_prompt(prompt_name)
        report = AnnotateReport("vllm-inproc", model, prompt.version)
        init_ray(address)
        _annotate_inproc(root, items, model, prompt, frames, sampling, bounds, engine or {}, concurrency, report,
                         progress)
    report.elapsed_s = time.monotonic() - t0
    report.tables = store.build_tables(root)
    return report
