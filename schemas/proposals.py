"""Instruction proposals: what an annotator (a VLM or the signal rules) says a recording's task and subtasks are.

Two contracts live here:
- the JSON schema a VLM must answer with (`reply_schema`): every field is bounded (patterns, enums, ranges,
  maxItems) so that even a weak or random model cannot run away, and constrained decoding enforces it;
- the catalog tables written by `vla-data annotate` (OUT/catalog/proposals.parquet and proposal_spans.parquet).

Bump PROPOSALS_VERSION on any incompatible change to either.
"""

from __future__ import annotations

import pyarrow as pa

PROPOSALS_VERSION = "1.0"

# Instructions: a letter first, then letters, digits, spaces and light punctuation, bounded by the pattern
# itself. (A string bounded only by maxLength lets xgrammar emit raw control characters; a pattern does not.
# xgrammar 0.2.8 fails to compile a pattern repetition above {,128}, hence the task's 120.)
INSTRUCTION_MAX = 100
TASK_MAX = 120
INSTRUCTION_PATTERN = rf"^[A-Za-z][A-Za-z0-9 ,'-]{{1,{INSTRUCTION_MAX - 1}}}$"
TASK_PATTERN = rf"^[A-Za-z][A-Za-z0-9 ,'-]{{1,{TASK_MAX - 1}}}$"
REVIEW_REASONS = ["none", "unclear_task", "unclear_boundaries", "occluded", "failed_attempt", "other"]

MADE_BY = ("vlm", "rules")  # who made a proposal; rules-made ones are marked as such wherever they appear
STATUS = ("ok", "needs_review", "pending")  # pending: no answer yet (server down, ...), retried by the next run


def reply_schema(duration_s: float, max_spans: int) -> dict:
    """The answer to one recording's request: times are seconds on the recording's clock."""
    seconds = {"type": "number", "minimum": 0, "maximum": round(float(duration_s), 3)}
    return {
        "type": "object",
        "properties": {
            "task": {"type": "string", "pattern": TASK_PATTERN},
            "subtasks": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_spans,
                "items": {
                    "type": "object",
                    "properties": {
                        "start_s": seconds,
                        "end_s": seconds,
                        "instruction": {"type": "string", "pattern": INSTRUCTION_PATTERN},
                    },
                    "required": ["start_s", "end_s", "instruction"],
                    "additionalProperties": False,
                },
            },
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "needs_review": {"type": "boolean"},
            "review_reason": {"type": "string", "enum": REVIEW_REASONS},
        },
        "required": ["task", "subtasks", "confidence", "needs_review", "review_reason"],
        "additionalProperties": False,
    }


PROPOSALS = pa.schema(
    [
        ("proposal_id", pa.string()),  # the cache key: hash of (inputs, prompt version, model, sampling)
        ("episode_id", pa.string()),
        ("robot", pa.string()),
        ("made_by", pa.string()),  # vlm | rules
        ("backend", pa.string()),  # vllm | vllm-inproc | rules
        ("model", pa.string()),
        ("prompt_version", pa.string()),
        ("status", pa.string()),  # ok | needs_review | pending
        ("reason", pa.string()),  # why it needs review, or why it is pending
        ("task", pa.string()),
        ("confidence", pa.float64()),
        ("requests", pa.int32()),  # chat requests made for it (a repair counts)
        ("tokens_in", pa.int64()),
        ("tokens_out", pa.int64()),
        ("latency_s", pa.float64()),
        ("raw_response", pa.string()),  # the model's last answer, verbatim
        ("created_at", pa.string()),  # ISO 8601 UTC
        ("is_current", pa.bool_()),  # the proposal the last annotate run chose for this recording
    ]
)

PROPOSAL_SPANS = pa.schema(
    [
        ("proposal_id", pa.string()),
        ("episode_id", pa.string()),
        ("span_index", pa.int32()),
        ("start_frame", pa.int32()),
        ("end_frame", pa.int32()),  # exclusive
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("instruction", pa.string()),
        ("clip_id", pa.string()),  # the skeleton clip with the same frames, null where the annotator moved them
    ]
)

TABLES = {"proposals": PROPOSALS, "proposal_spans": PROPOSAL_SPANS}
SORT_KEYS = {"proposals": ["episode_id", "created_at", "proposal_id"],
             "proposal_spans": ["episode_id", "proposal_id", "span_index"]}


def with_version(schema: pa.Schema) -> pa.Schema:
    return schema.with_metadata({"vla_data.proposals_version": PROPOSALS_VERSION})
