"""One recording through a VLM: request -> schema-valid answer -> semantic checks -> at most one repair ->
proposal. The pure steps (`cache_key`, `evaluate`, `finish`) are shared by the HTTP and the in-process backends."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from annotators.frames import frames_hash
from annotators.proposal import Proposal, check, parse, schema_for, skeleton_spans, spans_from_answer
from annotators.prompt import Bounds, Prompt, RecordingRequest, messages, repair_messages
from annotators.vllm_client import ChatClient, Completion, EndpointError, RequestError, Sampling


def cache_key(req: RecordingRequest, prompt_version: str, model: str, sampling: Sampling, bounds: Bounds) -> str:
    """Same frames, spans, prompt, model and sampling -> same key -> the stored answer is reused."""
    inputs = {"frames": frames_hash(req.frames), "spans": [(s.start_frame, s.end_frame) for s in req.spans],
              "fps": req.fps, "duration_s": req.duration_s, "task_name": req.task_name, "prompt": prompt_version,
              "model": model, "sampling": sampling.model_dump(), "bounds": asdict(bounds)}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:24]


def evaluate(text: str, finish_reason: str, req: RecordingRequest, bounds: Bounds) -> tuple[dict | None, list[str]]:
    """(answer, problems): problems is empty when the answer can be used as is."""
    if finish_reason != "stop":
        return None, [f"the answer was cut off (finish_reason={finish_reason or 'missing'}): "
                      f"answer with a shorter JSON object"]
    obj, why = parse(text, schema_for(req, bounds))
    if obj is None:
        return None, [f"the answer {why}"]
    return obj, check(obj, req, bounds)


def finish(base: Proposal, req: RecordingRequest, obj: dict | None, problems: list[str]) -> Proposal:
    """Fills the answer into the proposal. An answer that still fails its checks is kept (raw response) but the
    skeleton's spans stand and the recording is flagged for review with the reasons: nothing is dropped."""
    if problems:
        base.status = "needs_review"
        base.reason = "failed checks after one repair: " + "; ".join(problems)
        base.spans = skeleton_spans(req.spans)
        if obj is not None:
            base.task = obj["task"].strip()
            base.confidence = float(obj["confidence"])
        return base
    base.task, base.confidence = obj["task"].strip(), float(obj["confidence"])
    base.spans = spans_from_answer(obj, req)
    if obj["needs_review"]:
        base.status, base.reason = "needs_review", f"the model asked for review: {obj['review_reason']}"
    else:
        base.status, base.reason = "ok", None
    return base


def _account(p: Proposal, c: Completion) -> None:
    p.requests += c.attempts
    p.tokens_in += c.tokens_in
    p.tokens_out += c.tokens_out
    p.latency_s += c.latency_s
    p.raw_response = c.text


async def propose(client: ChatClient, prompt: Prompt, req: RecordingRequest, bounds: Bounds, sampling: Sampling,
                  key: str, backend: str = "vllm") -> Proposal:
    """Never raises for a server problem: the proposal comes back pending with the reason instead."""
    p = Proposal(key, req.episode_id, req.robot, "vlm", backend, client.model, prompt.version, "pending", None, None,
                 None)
    first = messages(prompt, req, bounds)
    schema = schema_for(req, bounds)
    try:
        c = await client.complete(first, schema, sampling)
        _account(p, c)
        obj, problems = evaluate(c.text, c.finish_reason, req, bounds)
        if problems:
            c = await client.complete(repair_messages(prompt, first, c.text, problems), schema, sampling)
            _account(p, c)
            obj, problems = evaluate(c.text, c.finish_reason, req, bounds)
    except (EndpointError, RequestError) as e:
        p.reason = str(e)
        return p
    return finish(p, req, obj, problems)
