"""The `vllm-inproc` backend: vLLM engines inside Ray workers on GPU nodes, through Ray Data LLM, for batch
runs on a cluster without a separate server. Same prompts, schema, checks and single repair round as the HTTP
backend (annotators.vlm); only the transport differs.

Needs `ray[llm]` and a CUDA vLLM on the GPU nodes (see docs/annotate.md); it is not installed on CPU machines.
"""

from __future__ import annotations

import json
import time

from annotators.proposal import Proposal, schema_for
from annotators.prompt import Bounds, Prompt, RecordingRequest, messages, repair_messages
from annotators.vllm_client import Sampling
from annotators.vlm import evaluate, finish


def _processor(model: str, engine: dict, concurrency: int, batch_size: int, sampling: Sampling):
    try:
        import importlib

        from ray.data.llm import build_processor, vLLMEngineProcessorConfig
        importlib.import_module("vllm")  # fail here, with a clear message, rather than inside a Ray actor
    except ImportError as e:
        raise RuntimeError("the vllm-inproc backend needs `ray[llm]` and vllm on the GPU nodes "
                           f"(see docs/annotate.md): {e}") from e
    config = vLLMEngineProcessorConfig(
        model_source=model,
        engine_kwargs={"structured_outputs_config": {"backend": "xgrammar"}, **engine},
        prepare_multimodal_stage={"enabled": True, "chat_template_content_format": "openai"},
        concurrency=concurrency, batch_size=batch_size, accelerator_type=None)

    def pre(row: dict) -> dict:
        return {**row, "messages": json.loads(row["messages"]),
                "sampling_params": {**sampling.model_dump(), "structured_outputs": {"json": json.loads(row["schema"])}}}

    def post(row: dict) -> dict:
        finished = row["num_generated_tokens"] < sampling.max_tokens  # the engine output has no finish_reason
        return {"key": row["key"], "text": row["generated_text"], "finish_reason": "stop" if finished else "length",
                "tokens_in": row["num_input_tokens"], "tokens_out": row["num_generated_tokens"]}

    return build_processor(config, preprocess=pre, postprocess=post)


def _round(processor, convs: dict[str, tuple[list[dict], dict]]) -> dict[str, dict]:
    import ray

    rows = [{"key": k, "messages": json.dumps(m), "schema": json.dumps(s)} for k, (m, s) in convs.items()]
    return {r["key"]: r for r in processor(ray.data.from_items(rows)).take_all()}


def propose_batch(reqs: dict[str, RecordingRequest], prompt: Prompt, bounds: Bounds, sampling: Sampling,
                  model: str, engine: dict, concurrency: int = 1, batch_size: int = 16) -> list[Proposal]:
    """Proposals for {cache key: request}: one batch round, then one repair round for the answers that failed.
    `engine` holds vLLM engine kwargs (tensor_parallel_size, max_model_len, limit_mm_per_prompt, ...)."""
    processor = _processor(model, engine, concurrency, batch_size, sampling)
    t0 = time.monotonic()
    first = {k: (messages(prompt, r, bounds), schema_for(r, bounds)) for k, r in reqs.items()}
    answers = _round(processor, first)
    props = {k: Proposal(k, r.episode_id, r.robot, "vlm", "vllm-inproc", model, prompt.version, "pending", None, None,
                         None) for k, r in reqs.items()}
    results, repairs = {}, {}
    for k, a in answers.items():
        props[k].requests, props[k].tokens_in, props[k].tokens_out = 1, a["tokens_in"], a["tokens_out"]
        props[k].raw_response = a["text"]
        results[k] = evaluate(a["text"], a["finish_reason"], reqs[k], bounds)
        if results[k][1]:
            m, s = first[k]
            repairs[k] = (repair_messages(prompt, m, a["text"], results[k][1]), s)
    for k, a in (_round(processor, repairs) if repairs else {}).items():
        props[k].requests += 1
        props[k].tokens_in += a["tokens_in"]
        props[k].tokens_out += a["tokens_out"]
        props[k].raw_response = a["text"]
        results[k] = evaluate(a["text"], a["finish_reason"], reqs[k], bounds)
    per_request = (time.monotonic() - t0) / max(1, len(reqs))  # batch runs have no per-request latency
    out = []
    for k, p in props.items():
        p.latency_s = per_request
        if k not in results:
            p.reason = "the engine returned no row for this request"
        out.append(finish(p, reqs[k], *results[k]) if k in results else p)
    return out
