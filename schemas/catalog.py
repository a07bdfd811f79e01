"""Catalog tables written by ingest (Parquet under OUT/catalog/) and the per-episode frame table.

Bump CATALOG_VERSION on any incompatible change; readers check it through the parquet metadata.
"""

from __future__ import annotations

import pyarrow as pa

CATALOG_VERSION = "1.2"  # 1.1: episodes.recorded_at; 1.2: episodes.depth_cameras

CAMERA = pa.struct(
    [
        ("name", pa.string()),
        ("role", pa.string()),
        ("uri", pa.string()),  # mp4 (encoded once at ingest, or the source's own file)
        ("encoded_by_ingest", pa.bool_()),
        ("num_frames", pa.int32()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("codec", pa.string()),
    ]
)

EPISODES = pa.schema(
    [
        ("episode_id", pa.string()),
        ("robot", pa.string()),
        ("source_format", pa.string()),
        ("source_key", pa.string()),
        ("source_uri", pa.string()),
        ("content_hash", pa.string()),
        ("adapter_version", pa.string()),
        ("task_name", pa.string()),
        # When the recording started: the source's own clock where it has one (AgiBot timestamps), else the
        # recording file's modification time. Null when neither is known.
        ("recorded_at", pa.timestamp("us", tz="UTC")),
        ("fps", pa.float64()),
        ("num_frames", pa.int32()),
        ("duration_s", pa.float64()),
        ("static_s", pa.float64()),
        ("active_s", pa.float64()),
        ("num_clips", pa.int32()),
        ("state_names", pa.list_(pa.string())),
        ("action_names", pa.list_(pa.string())),
        ("cameras", pa.list_(CAMERA)),
        # depth streams kept by `ingest --depth` (uint16 mm, lossless FFV1 .mkv); empty otherwise
        ("depth_cameras", pa.list_(CAMERA)),
        ("frames_uri", pa.string()),
    ]
)

CLIPS = pa.schema(
    [
        ("clip_id", pa.string()),
        ("episode_id", pa.string()),
        ("robot", pa.string()),
        ("clip_index", pa.int32()),
        ("start_frame", pa.int32()),
        ("end_frame", pa.int32()),  # exclusive
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("duration_s", pa.float64()),
        ("origin", pa.string()),  # signals | source_labels
        ("source_text", pa.string()),  # the source's own label text, when origin = source_labels
        ("source_skill", pa.string()),
    ]
)

STATIC_SPANS = pa.schema(
    [
        ("episode_id", pa.string()),
        ("start_frame", pa.int32()),
        ("end_frame", pa.int32()),  # exclusive
        ("start_s", pa.float64()),
        ("duration_s", pa.float64()),
        ("position", pa.string()),  # head | mid | tail
    ]
)

QUARANTINE = pa.schema(
    [
        ("source_key", pa.string()),
        ("source_format", pa.string()),
        ("robot", pa.string()),
        ("source_uri", pa.string()),
        ("reason_code", pa.string()),
        ("reason", pa.string()),
    ]
)

TABLES = {"episodes": EPISODES, "clips": CLIPS, "static_spans": STATIC_SPANS, "quarantine": QUARANTINE}
SORT_KEYS = {
    "episodes": ["robot", "source_key"],
    "clips": ["episode_id", "clip_index"],
    "static_spans": ["episode_id", "start_frame"],
    "quarantine": ["source_format", "source_key"],
}


def frames_schema(state_dim: int, action_dim: int) -> pa.Schema:
    """Per-episode frame table (OUT/episodes/<id>/frames.parquet): one row per joint sample; every camera
    holds exactly one frame per row (validated), so a row's frame_index addresses each camera's video."""
    return pa.schema(
        [
            ("episode_id", pa.string()),
            ("frame_index", pa.int32()),
            ("timestamp", pa.float64()),
            ("observation.state", pa.list_(pa.float32(), state_dim)),
            ("action", pa.list_(pa.float32(), action_dim)),
            ("visual_motion", pa.float32()),
            ("static", pa.bool_()),
            ("clip_index", pa.int32()),  # -1 where the frame belongs to no clip
        ]
    )


def with_version(schema: pa.Schema) -> pa.Schema:
    return schema.with_metadata({"vla_data.catalog_version": CATALOG_VERSION})
