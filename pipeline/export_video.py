"""Encodes one camera of a batch of source episodes into LeRobot video files: each source video is decoded
once, the exported frames are resized and encoded continuously (pts = frame counter, constant frame rate),
and a new file starts at an episode boundary once the current one reaches the size limit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.export_plan import SourceEpisode
from pipeline.stats import depth_stats, image_stats
from pipeline.video import DEPTH_EXPORT, Mp4Writer, decode_frames
from schemas.lerobot import DEPTH_MAX_MM, QUANTILES

MAX_STAT_SAMPLES = 100  # frames per episode sampled for image stats, as lerobot does for short episodes


@dataclass
class EpisodeVideo:
    episode_index: int
    part: int  # file number within this batch's output
    from_frame: int  # first frame of the episode inside that file
    length: int
    stats: dict


def _resize(img: np.ndarray, size: tuple[int, int] | None, depth: bool = False) -> np.ndarray:
    if size is None or (img.shape[1], img.shape[0]) == size:
        return img
    # depth: nearest, so no millimetre value is invented between a near and a far surface
    return cv2.resize(img, size, interpolation=cv2.INTER_NEAREST if depth else cv2.INTER_AREA)


def encode_camera(sources: list[SourceEpisode], camera: str, out_stem: str, fps: int, codec: str,
                  size: tuple[int, int] | None, gop: int, crf: int, max_bytes: int,
                  depth: bool = False) -> tuple[list[str], list[EpisodeVideo]]:
    """Writes <out_stem>-<part>.mp4 files; returns their paths and where each exported episode landed. A depth
    camera (depth=True) goes to lossless 12-bit HEVC, millimetres clipped to DEPTH_MAX_MM; `codec` is ignored."""
    files: list[str] = []
    results: list[EpisodeVideo] = []
    writer: Mp4Writer | None = None

    def new_file() -> Mp4Writer:
        path = f"{out_stem}-{len(files):04d}.mp4"
        files.append(path)
        if depth:
            return Mp4Writer(path, fps, DEPTH_EXPORT[0], gop=gop, pix_fmt=DEPTH_EXPORT[1])
        return Mp4Writer(path, fps, codec, gop=gop, crf=crf)

    try:
        for src in sources:
            uri = next(c["uri"] for c in src.cameras + src.depth_cameras if c["name"] == camera)
            wanted = {}  # source frame index -> (export episode, position in it)
            for ex in src.exports:
                pos = 0
                for a, b in ex.spans:
                    for f in range(a, b):
                        wanted[f] = (ex, pos)
                        pos += 1
            samples: dict[int, list[np.ndarray]] = {}
            starts: dict[int, EpisodeVideo] = {}
            frames = iter(sorted(wanted))
            decoded = decode_frames(uri, keep=wanted.__contains__, format="gray16le" if depth else "rgb24")
            for i, (_, rgb) in zip(frames, decoded):
                ex, pos = wanted[i]
                if pos == 0:  # an episode begins: roll over to a new file when this one is full
                    if writer is None or Path(files[-1]).stat().st_size >= max_bytes:
                        if writer is not None:
                            writer.close()
                        writer = new_file()
                    starts[ex.index] = EpisodeVideo(ex.index, len(files) - 1, writer.frames, ex.length, {})
                frame = _resize(rgb, size, depth)
                if depth:
                    frame = np.minimum(frame, DEPTH_MAX_MM)
                writer.write(frame)
                step = max(1, ex.length // MAX_STAT_SAMPLES)
                if pos % step == 0:  # a copy: a view would pin the whole frame
                    samples.setdefault(ex.index, []).append(frame[::2, ::2].copy())
                if pos == ex.length - 1:  # summarized as soon as it ends: memory stays flat over long sources
                    summarize = depth_stats if depth else image_stats
                    starts[ex.index].stats = summarize(samples.pop(ex.index), QUANTILES)
            missing = [ex.index for ex in src.exports if ex.index not in starts or not starts[ex.index].stats]
            if missing:
                raise RuntimeError(f"{uri}: ended before the frames of exported episodes {missing}")
            results += [starts[ex.index] for ex in src.exports]
    finally:
        if writer is not None:
            writer.close()
    return files, results
