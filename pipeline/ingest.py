"""One recording end to end: read -> validate -> camera pass (encode or decode once, motion score) ->
static removal -> clips -> per-episode files, published atomically with a manifest written last."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import traceback
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import adapters, storage
from pipeline.catalog import manifest_path
from pipeline.motion import VisualMotion
from pipeline.segment import cut_clips
from pipeline.static import static_mask, static_spans
from pipeline.validate import check_frame_counts, validate_signals
from pipeline.video import DEPTH_ARCHIVE, Mp4Writer, codec_of, decode_frames
from schemas.catalog import CATALOG_VERSION, frames_schema, with_version
from schemas.episode import CameraStream, Episode, QuarantineError, SourceRef
from schemas.robot import RobotConfig

log = logging.getLogger(__name__)
INGEST_CODEC = "libx264"  # archive encode of frame-based sources; the export re-encodes for training


def source_uri(ref: SourceRef) -> str:
    return storage.join(storage.absolute(ref.root), ref.key)


def episode_id(robot: str, ref: SourceRef) -> str:
    """Derived from where the recording lives, so that two input roots with the same layout never collide."""
    return f"{robot}-{hashlib.sha1(source_uri(ref).encode()).hexdigest()[:12]}"


def config_hash(robot: RobotConfig) -> str:
    """Changes whenever a setting that shapes the output changes: resume then re-processes."""
    return hashlib.sha1(robot.model_dump_json().encode()).hexdigest()


def _camera_pass(ep: Episode, cam: CameraStream, staging: Path) -> tuple[dict, np.ndarray]:
    """Reads every frame of one camera once: encodes it to mp4 when it arrived as frames, checks that an
    mp4 decodes with increasing timestamps, and scores visual motion."""
    motion, frames, shape = VisualMotion(), 0, (0, 0)
    if cam.frames is not None:
        uri = staging / f"{cam.name}.mp4"
        with Mp4Writer(uri, ep.fps, INGEST_CODEC, gop=int(round(ep.fps))) as writer:
            for rgb in cam.frames():
                writer.write(rgb)
                motion.add(rgb)
                frames, shape = frames + 1, rgb.shape
        codec = INGEST_CODEC
    else:
        uri, last = Path(cam.video_path), -1.0
        try:
            for t, rgb in decode_frames(uri):
                if t <= last:
                    raise QuarantineError("corrupt_video", f"{cam.name}.mp4: frame {frames} time {t:.4f} s "
                                          f"does not increase")
                last = t
                motion.add(rgb)
                frames, shape = frames + 1, rgb.shape
            codec = codec_of(uri)
        except av.error.FFmpegError as e:
            raise QuarantineError("corrupt_video", f"{cam.name}.mp4 does not decode after frame {frames}: "
                                  f"{e.strerror or e}") from e
    info = {"name": cam.name, "role": cam.role, "uri": str(uri), "encoded_by_ingest": cam.frames is not None,
            "num_frames": frames, "width": shape[1], "height": shape[0], "codec": codec}
    return info, motion.scores


def _depth_pass(ep: Episode, cam: CameraStream, staging: Path) -> dict:
    """Archives one depth stream losslessly (every millimetre value kept) as <name>.mkv."""
    uri, frames, shape = staging / f"{cam.name}.mkv", 0, (0, 0)
    with Mp4Writer(uri, ep.fps, DEPTH_ARCHIVE[0], pix_fmt=DEPTH_ARCHIVE[1]) as writer:
        for mm in cam.frames():
            if mm.dtype != np.uint16 or mm.ndim != 2:
                raise QuarantineError("bad_depth", f"{cam.name} frame {frames}: {mm.dtype} {mm.shape}, not uint16 (H, W)")
            writer.write(mm)
            frames, shape = frames + 1, mm.shape
    return {"name": cam.name, "role": cam.role, "uri": str(uri), "encoded_by_ingest": True, "num_frames": frames,
            "width": shape[1], "height": shape[0], "codec": DEPTH_ARCHIVE[0]}


def _process(ep: Episode, robot: RobotConfig, out: Path, eid: str, depth: bool = False) -> dict:
    validate_signals(ep, robot)
    final = out / "episodes" / eid
    staging = out / "episodes" / f".{eid}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        cams, scores = zip(*(_camera_pass(ep, cam, staging) for cam in ep.cameras))
        depths = [_depth_pass(ep, cam, staging) for cam in ep.depth] if depth else []
        check_frame_counts(ep.num_frames, {c["name"]: c["num_frames"] for c in cams + tuple(depths)})
        visual = np.max(np.stack(scores), axis=0)
        static = static_mask(ep.state, visual, robot)
        clips = cut_clips(ep.state, static, ep.segments, robot)
        clip_of_frame = np.full(ep.num_frames, -1, np.int32)
        for i, c in enumerate(clips):
            clip_of_frame[c.start:c.end] = i
        schema = with_version(frames_schema(ep.state.shape[1], ep.action.shape[1]))
        table = pa.table({
            "episode_id": pa.array([eid] * ep.num_frames, pa.string()),
            "frame_index": pa.array(np.arange(ep.num_frames, dtype=np.int32)),
            "timestamp": pa.array(ep.timestamps.astype(np.float64)),
            "observation.state": pa.FixedSizeListArray.from_arrays(pa.array(ep.state.ravel()), ep.state.shape[1]),
            "action": pa.FixedSizeListArray.from_arrays(pa.array(ep.action.ravel()), ep.action.shape[1]),
            "visual_motion": pa.array(visual.astype(np.float32)),
            "static": pa.array(static),
            "clip_index": pa.array(clip_of_frame),
        }, schema=schema)
        pq.write_table(table, staging / "frames.parquet")
        cams = [{**c, "uri": str(final / Path(c["uri"]).name) if c["encoded_by_ingest"] else c["uri"]} for c in cams]
        depths = [{**c, "uri": str(final / Path(c["uri"]).name)} for c in depths]
        if final.exists():
            shutil.rmtree(final)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fps, n = ep.fps, ep.num_frames
    spans = static_spans(static)
    static_s = float(static.sum()) / fps
    return {
        "episode": {
            "episode_id": eid, "robot": robot.name, "source_format": ep.source.source_format,
            "source_key": ep.source.key, "source_uri": source_uri(ep.source),
            "content_hash": ep.content_hash, "adapter_version": ep.adapter_version, "task_name": ep.task_name,
            # epoch microseconds: the manifest is JSON, and pyarrow reads ints as timestamp values
            "recorded_at": round(ep.recorded_at.timestamp() * 1e6) if ep.recorded_at else None,
            "fps": fps, "num_frames": n, "duration_s": n / fps, "static_s": static_s,
            "active_s": n / fps - static_s, "num_clips": len(clips), "state_names": ep.state_names,
            "action_names": ep.action_names, "cameras": list(cams), "depth_cameras": depths,
            "frames_uri": str(final / "frames.parquet"),
        },
        "clips": [{
            "clip_id": f"{eid}-{i:03d}", "episode_id": eid, "robot": robot.name, "clip_index": i,
            "start_frame": c.start, "end_frame": c.end, "start_s": c.start / fps, "end_s": c.end / fps,
            "duration_s": (c.end - c.start) / fps, "origin": c.origin, "source_text": c.text or None,
            "source_skill": c.skill or None} for i, c in enumerate(clips)],
        "static_spans": [{"episode_id": eid, "start_frame": a, "end_frame": b, "start_s": a / fps,
                          "duration_s": (b - a) / fps, "position": pos} for a, b, pos in spans],
    }


def _localize(ref: SourceRef, dest: Path) -> SourceRef:
    """A remote recording's files copied to a node-local folder (the adapters read local files)."""
    for f in ref.files:
        if storage.exists(storage.join(ref.root, f)):
            storage.download(storage.join(ref.root, f), dest / f)
    return dataclasses.replace(ref, root=str(dest))


def _rebase(manifest: dict, old: str, new: str) -> None:
    """Rewrites the file locations a manifest names from one root to another."""
    def move(uri: str) -> str:
        return storage.join(new, Path(uri).relative_to(old).as_posix()) if uri.startswith(old + "/") else uri
    ep = manifest["episode"]
    ep["frames_uri"] = move(ep["frames_uri"])
    ep["cameras"] = [{**c, "uri": move(c["uri"])} for c in ep["cameras"]]
    ep["depth_cameras"] = [{**c, "uri": move(c["uri"])} for c in ep["depth_cameras"]]


def ingest_episode(ref: SourceRef, robot: RobotConfig, out: str | Path, depth: bool = False) -> dict:
    """Processes one recording and writes its manifest (the resume marker). Never raises for bad input:
    the episode is quarantined with its reason instead. Remote (s3://) recordings are read from a node-local
    copy; a remote output gets the episode's files first and its manifest last. `depth` keeps the source's
    depth streams (off by default: they are large)."""
    eid = episode_id(robot.name, ref)
    with tempfile.TemporaryDirectory(prefix="vla-ingest-") as tmp:
        local_ref = _localize(ref, Path(tmp) / "source") if storage.is_remote(ref.root) else ref
        local_out = Path(tmp) / "out" if storage.is_remote(out) else Path(out)
        manifest = _ingest(ref, local_ref, robot, local_out, eid, depth)
        if manifest["status"] == "ok":
            _rebase(manifest, local_ref.root, ref.root)
        if storage.is_remote(out):
            storage.delete(storage.join(out, "episodes", eid))
            if manifest["status"] == "ok":
                _rebase(manifest, str(local_out), storage.absolute(out))
                storage.upload_tree(local_out / "episodes" / eid, storage.join(out, "episodes", eid))
        storage.write_bytes(manifest_path(out, eid), json.dumps(manifest, sort_keys=True).encode())
    return manifest


def _ingest(ref: SourceRef, local_ref: SourceRef, robot: RobotConfig, out: Path, eid: str, depth: bool) -> dict:
    manifest = {"catalog_version": CATALOG_VERSION, "episode_id": eid, "fingerprint": ref.fingerprint,
                "robot_config": config_hash(robot), "depth": depth}
    try:
        episode = adapters.read(local_ref, robot)
        manifest |= {"status": "ok", **_process(dataclasses.replace(episode, source=ref), robot, out, eid, depth)}
    except QuarantineError as e:
        manifest |= {"status": "quarantined", "code": e.code, "reason": e.detail}
    except Exception as e:  # a bug or an unforeseen defect must not stop the batch; it is reported as such
        log.error("unexpected error on %s:\n%s", ref.key, traceback.format_exc())
        manifest |= {"status": "quarantined", "code": "unexpected_error", "reason": f"{type(e).__name__}: {e}"}
    if manifest["status"] == "quarantined":
        shutil.rmtree(out / "episodes" / eid, ignore_errors=True)  # an earlier good run of a now-broken file
        manifest["quarantine"] = {
            "source_key": ref.key, "source_format": ref.source_format, "robot": robot.name,
            "source_uri": source_uri(ref), "reason_code": manifest["code"], "reason": manifest["reason"]}
    return manifest


