"""Instruction proposals: the checks, the rules backend, a scripted OpenAI-protocol server for the repair and
retry paths, and a real vLLM server (tiny random Qwen3-VL) for the whole path, caching and a server killed
mid-run."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import jsonschema
import pyarrow.parquet as pq
import pytest
from aiohttp import web
from typer.testing import CliRunner

from annotators.frames import FrameSampling
from annotators.prompt import Bounds, RecordingRequest, Span
from annotators.proposal import check, schema_for
from annotators.vllm_client import Sampling
from jobs.annotate import read_requests, run_annotate
from jobs.cli import app
from jobs.runtime import free_port
from schemas.proposals import reply_schema
from tests.conftest import truth

SMALL_FRAMES = FrameSampling(max_samples=4, width=64, height=48)  # few vision tokens for the tiny CPU model


def _catalog_copy(ingested, tmp_path: Path) -> Path:
    """A private copy of the session catalog (annotate adds proposals to it); media stay where they are."""
    out = tmp_path / "catalog"
    shutil.copytree(ingested.out / "catalog", out / "catalog")
    return out


def _req(spans=((0.0, 4.0), (4.0, 9.0), (9.0, 12.0)), fps=50.0) -> RecordingRequest:
    return RecordingRequest("ep", "aloha", fps, 12.0, [Span(int(a * fps), int(b * fps), a, b, f"c{i}")
                                                       for i, (a, b) in enumerate(spans)])


def _answer(*spans, task="Hand the cube over") -> dict:
    return {"task": task, "subtasks": [{"start_s": a, "end_s": b, "instruction": t} for a, b, t in spans],
            "confidence": 0.9, "needs_review": False, "review_reason": "none"}


# --- checks -------------------------------------------------------------------------------------------------------

def test_schema_bounds_every_field():
    """Strings have a pattern or an enum, numbers a range, arrays maxItems, objects no extra keys."""
    def walk(node, path):
        t = node.get("type")
        if t == "string":
            assert "pattern" in node or "enum" in node, path
            if "pattern" in node:
                assert re.search(r"\{\d+,\d+\}\$$", node["pattern"]), path  # the length bound is in the pattern
        elif t in ("number", "integer"):
            assert "minimum" in node and "maximum" in node, path
        elif t == "array":
            assert "maxItems" in node, path
            walk(node["items"], path + "[]")
        elif t == "object":
            assert node["additionalProperties"] is False and set(node["required"]) == set(node["properties"]), path
            for k, v in node["properties"].items():
                walk(v, f"{path}.{k}")
        else:
            assert t == "boolean", path
    walk(reply_schema(12.0, 6), "$")


def test_checks_accept_kept_shifted_merged_and_split_spans():
    req, b = _req(), Bounds()
    assert check(_answer((0, 4, "Grasp the cube"), (4, 9, "Lift it"), (9, 12, "Place it")), req, b) == []
    assert check(_answer((0.5, 4.8, "Grasp the cube"), (4.8, 12, "Place it")), req, b) == []  # shift + merge
    assert check(_answer((0, 2.5, "Reach"), (2.5, 4, "Grasp"), (4, 12, "Move it")), req, b) == []  # split


@pytest.mark.parametrize("answer, problem", [
    (_answer((0, 5, "Grasp the cube"), (4, 9, "Lift it")), "must not overlap"),
    (_answer((4, 9, "Lift it"), (0, 4, "Grasp the cube")), "must not overlap"),
    (_answer((3, 3, "Grasp the cube"),), "not an interval"),
    (_answer((0, 0.1, "Grasp the cube"),), "shorter than"),
    (_answer((0, 4, "The robot grasps the cube"),), "imperative"),
    (_answer((0, 4, "Grasping the cube"),), "imperative"),
    (_answer((0, 6.5, "Grasp the cube"), (6.5, 12, "Place it")), "more than 1 s from every proposed boundary"),
    (_answer((0, 4, "Grasp the cube"), task="the cube"), "task must be imperative"),
])
def test_checks_reject(answer, problem):
    problems = check(answer, _req(), Bounds())
    assert any(problem in p for p in problems), problems


# --- rules backend --------------------------------------------------------------------------------------------------

SKILL_VERB = {"pick": "Grasp", "place": "Release", "handover": "Hand", "retract": "Move", "lift": "Carry"}


def test_rules_backend_cli_without_server(ingested, tmp_path):
    out = _catalog_copy(ingested, tmp_path)
    res = CliRunner().invoke(app, ["annotate", str(out), "--backend", "rules"])
    assert res.exit_code == 0, res.output
    assert "rules-made" in res.output
    props = pq.read_table(out / "catalog" / "proposals.parquet").to_pylist()
    spans = pq.read_table(out / "catalog" / "proposal_spans.parquet").to_pylist()
    assert len(props) == len(read_requests(out)) and all(p["made_by"] == "rules" and p["model"] == "rules-v1"
                                                          and p["requests"] == 0 for p in props)
    # The verbs follow the ground-truth skills of the synthetic scenes where the clip matches a true subtask.
    clips = {c["clip_id"]: c for c in pq.read_table(out / "catalog" / "clips.parquet").to_pylist()}
    episodes = {e["episode_id"]: e for e in pq.read_table(out / "catalog" / "episodes.parquet").to_pylist()}
    hits = total = 0
    for s in spans:
        clip = clips[s["clip_id"]]
        gt = truth(episodes[s["episode_id"]])
        fps = episodes[s["episode_id"]]["fps"]
        match = [t for t in gt["subtasks"] if abs(t["start_frame"] - clip["start_frame"]) / fps < 0.3
                 and abs(t["end_frame"] - clip["end_frame"]) / fps < 0.3]
        if len(match) == 1:
            total += 1
            hits += s["instruction"].split()[0] == SKILL_VERB[match[0]["skill"]]
    assert total >= 40 and hits / total >= 0.9, (hits, total)


# --- a scripted server speaking the OpenAI chat protocol ---------------------------------------------------------

class ScriptedServer:
    """Answers /v1/chat/completions from a list of (status, content) in order and records every request."""

    def __init__(self, script: list[tuple[int, str]]):
        self.script, self.seen, self.port = list(script), [], free_port()

    async def chat(self, request: web.Request) -> web.Response:
        self.seen.append(await request.json())
        status, content = self.script.pop(0)
        if status != 200:
            return web.json_response({"error": {"message": content}}, status=status)
        return web.json_response({"choices": [{"message": {"role": "assistant", "content": content},
                                               "finish_reason": "stop"}],
                                  "usage": {"prompt_tokens": 100, "completion_tokens": 20}})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "scripted"}]})

    def __enter__(self) -> "ScriptedServer":
        ready = threading.Event()

        def serve():
            self.loop = asyncio.new_event_loop()
            a = web.Application()
            a.router.add_post("/v1/chat/completions", self.chat)
            a.router.add_get("/v1/models", self.models)
            self.runner = web.AppRunner(a)
            self.loop.run_until_complete(self.runner.setup())
            self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def _one_recording(ingested, tmp_path):
    out = _catalog_copy(ingested, tmp_path)
    _, req = read_requests(out, limit=1)[0]
    return out, req


def _overlapping(req: RecordingRequest) -> str:
    a, b = req.spans[0], req.spans[1]
    return json.dumps(_answer((a.start_s, b.start_s + 0.5, "Grasp the cube"), (b.start_s, b.end_s, "Lift it")))


def _kept(req: RecordingRequest) -> str:
    return json.dumps(_answer(*[(s.start_s, s.end_s, f"Do step {i}") for i, s in enumerate(req.spans)]))


def test_failed_checks_get_exactly_one_repair_then_review(ingested, tmp_path):
    out, req = _one_recording(ingested, tmp_path)
    with ScriptedServer([(200, _overlapping(req)), (200, _overlapping(req))]) as srv:
        r = run_annotate(out, "vllm", srv.url, limit=1, frames=SMALL_FRAMES, progress=False)
    assert len(srv.seen) == 2 and r.requests == 2
    repair = srv.seen[1]["messages"]
    assert repair[:2] == srv.seen[0]["messages"] and repair[2] == {"role": "assistant", "content": _overlapping(req)}
    assert "must not overlap" in repair[3]["content"]
    assert srv.seen[0]["response_format"]["json_schema"]["schema"] == schema_for(req, Bounds())
    (p,) = pq.read_table(out / "catalog" / "proposals.parquet").to_pylist()
    assert p["status"] == "needs_review" and "after one repair" in p["reason"] and "overlap" in p["reason"]
    assert p["raw_response"] == _overlapping(req) and p["requests"] == 2
    # nothing dropped: the skeleton's spans stand, empty instructions for the reviewer to write
    spans = pq.read_table(out / "catalog" / "proposal_spans.parquet").to_pylist()
    assert [(s["start_frame"], s["end_frame"], s["clip_id"]) for s in spans] == \
        [(s.start_frame, s.end_frame, s.clip_id) for s in req.spans]


def test_repaired_answer_is_used(ingested, tmp_path):
    out, req = _one_recording(ingested, tmp_path)
    with ScriptedServer([(200, _overlapping(req)), (200, _kept(req))]) as srv:
        run_annotate(out, "vllm", srv.url, limit=1, frames=SMALL_FRAMES, progress=False)
    (p,) = pq.read_table(out / "catalog" / "proposals.parquet").to_pylist()
    spans = pq.read_table(out / "catalog" / "proposal_spans.parquet").to_pylist()
    assert p["status"] == "ok" and p["requests"] == 2
    assert [s["instruction"] for s in spans] == [f"Do step {i}" for i in range(len(req.spans))]
    assert [s["clip_id"] for s in spans] == [s.clip_id for s in req.spans]  # unchanged spans keep their clip


def test_retries_on_5xx_and_429_but_not_on_400(ingested, tmp_path):
    out, req = _one_recording(ingested, tmp_path)
    with ScriptedServer([(503, "busy"), (429, "slow down"), (200, _kept(req))]) as srv:
        r = run_annotate(out, "vllm", srv.url, limit=1, frames=SMALL_FRAMES, progress=False)
    assert len(srv.seen) == 3 and r.by_status == {"ok": 1}
    out2, _ = _one_recording(ingested, tmp_path / "b")
    with ScriptedServer([(400, "too many images")]) as srv:
        r = run_annotate(out2, "vllm", srv.url, limit=1, frames=SMALL_FRAMES, progress=False)
    assert len(srv.seen) == 1 and r.by_status == {"pending": 1} and "too many images" in r.pending[0][1]


# --- the real vLLM server -------------------------------------------------------------------------------------------

class Server:
    """The session's vLLM server, restartable on the same port."""

    def __init__(self, work: Path):
        from annotators.vllm_server import build_tiny_model

        self.work, self.port = work, free_port()
        self.model_dir = build_tiny_model(work / "tiny-qwen3-vl")
        self.handle = None
        self.start()

    def start(self) -> None:
        from annotators.vllm_server import start_server

        self.handle = start_server(self.model_dir, self.port, self.work / "server.log")

    def finished_requests(self) -> float:
        """vLLM's own count of finished requests (Prometheus /metrics)."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10).read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("vllm:request_success_total"))


@pytest.fixture(scope="module")
def vllm(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("vllm"))
    yield server
    server.handle.stop()


def _proposals(out: Path) -> list[dict]:
    return pq.read_table(out / "catalog" / "proposals.parquet").to_pylist()


@pytest.mark.timeout(1200)
def test_real_vllm_schema_valid_proposals_and_cache(ingested, vllm, tmp_path):
    out = _catalog_copy(ingested, tmp_path)
    items = read_requests(out)
    r = run_annotate(out, "vllm", vllm.handle.url, concurrency=4, frames=SMALL_FRAMES, progress=False)
    assert r.recordings == len(items) and "pending" not in r.by_status and r.requests >= len(items)
    props = {p["episode_id"]: p for p in _proposals(out)}
    assert set(props) == {req.episode_id for _, req in items}
    for _, req in items:
        p = props[req.episode_id]
        assert p["made_by"] == "vlm" and p["model"] == "tiny-qwen3-vl" and p["prompt_version"].startswith("subtasks-v1+")
        assert p["tokens_in"] > 0 and p["tokens_out"] > 0 and p["latency_s"] > 0
        # the server's constrained decoding produced a schema-valid answer (random weights: text is noise)
        jsonschema.validate(json.loads(p["raw_response"]), schema_for(req, Bounds()))
    before = vllm.finished_requests()
    again = run_annotate(out, "vllm", vllm.handle.url, concurrency=4, frames=SMALL_FRAMES, progress=False)
    assert again.requests == 0 and again.cached == len(items) and vllm.finished_requests() == before
    assert len(_proposals(out)) == len(items)


@pytest.mark.timeout(1200)
def test_real_vllm_killed_mid_run_then_resumed(ingested, vllm, tmp_path):
    out = _catalog_copy(ingested, tmp_path)
    items = read_requests(out)
    sampling = Sampling(seed=7)  # a new cache key: every recording needs a request
    result = {}
    run = threading.Thread(target=lambda: result.update(r=run_annotate(
        out, "vllm", vllm.handle.url, concurrency=1, frames=SMALL_FRAMES, sampling=sampling, retries=1,
        progress=False)))
    run.start()
    records = out / "_proposals"
    deadline = time.monotonic() + 600
    while len(list(records.glob("*/*.json"))) < 4 and time.monotonic() < deadline:  # 2 proposals, 2 pointers
        time.sleep(0.2)
    vllm.handle.stop()
    run.join(600)
    first = result["r"]
    assert 0 < first.by_status.get("pending", 0) < len(items), first.by_status
    assert all("no answer" in reason for _, reason in first.pending)
    pending = {p["episode_id"] for p in _proposals(out) if p["status"] == "pending"}
    assert pending == {e for e, _ in first.pending}

    vllm.start()
    second = run_annotate(out, "vllm", vllm.handle.url, concurrency=4, frames=SMALL_FRAMES, sampling=sampling,
                          progress=False)
    assert "pending" not in second.by_status and second.cached == len(items) - len(pending)
    props = _proposals(out)
    assert len(props) == len(items) and len({p["proposal_id"] for p in props}) == len(items)  # no duplicates
    assert all(p["is_current"] and p["status"] != "pending" for p in props)


def test_inproc_backend_on_gpu(ingested, tmp_path):
    """Ray Data LLM with a vLLM engine in a Ray worker: only where a GPU and a CUDA vLLM are present."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("no GPU")
    from annotators.vllm_server import build_tiny_model

    out = _catalog_copy(ingested, tmp_path)
    model = build_tiny_model(tmp_path / "tiny")
    r = run_annotate(out, "vllm-inproc", model=str(model), frames=SMALL_FRAMES, limit=2, progress=False,
                     engine={"max_model_len": 16384, "limit_mm_per_prompt": {"image": 12, "video": 0}})
    assert r.recordings == 2 and "pending" not in r.by_status
