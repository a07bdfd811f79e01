"""Constant-frame-rate mp4 writing and sequential decoding with PyAV."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline import storage

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole config to stderr otherwise

CODEC_OPTIONS = {
    # lp=1: libsvtav1 ignores thread_count and would take every core otherwise.
    "libsvtav1": {"crf": "35", "preset": "12", "svtav1-params": "lp=1"},
    "libx264": {"crf": "23", "preset": "veryfast"},
    "libx265": {"x265-params": "lossless=1:pools=1:log-level=error"},  # depth in exports: exact 12-bit
}
# Depth (uint16 millimetres): the ingest archive keeps every value (FFV1 gray16le, .mkv); exports use lossless
# 12-bit HEVC in mp4 (LeRobot's depth codec), so millimetres up to schemas.lerobot.DEPTH_MAX_MM.
DEPTH_ARCHIVE = ("ffv1", "gray16le")
DEPTH_EXPORT = ("libx265", "gray12le")


class Mp4Writer:
    """Encodes frames to a constant-frame-rate video (pts = frame index in 1/fps units): RGB to yuv420p, or
    uint16 depth to a gray pix_fmt (DEPTH_ARCHIVE, DEPTH_EXPORT), losslessly."""

    def __init__(self, path: str | Path, fps: float, codec: str = "libx264", gop: int | None = None,
                 crf: int | None = None, pix_fmt: str = "yuv420p"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(path), "w")
        self.stream = self.container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        self.stream.pix_fmt = pix_fmt
        self.input_format = "rgb24" if pix_fmt == "yuv420p" else pix_fmt
        self.stream.thread_count = 1
        self.stream.options = dict(CODEC_OPTIONS.get(codec, {})) | ({"crf": str(crf)} if crf is not None else {})
        if gop:
            self.stream.codec_context.gop_size = gop
            self.stream.options["g"] = str(gop)
        self.stream.codec_context.max_b_frames = 0  # pts == dts: every frame decodes in order, exactly
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        if self.frames == 0:
            self.stream.height, self.stream.width = rgb.shape[:2]
        frame = av.VideoFrame.from_ndarray(rgb, format=self.input_format)
        frame.pts = self.frames
        frame.time_base = Fraction(1) / self.stream.codec_context.framerate
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        try:
            if self.frames:
                for packet in self.stream.encode():
                    self.container.mux(packet)
        finally:
            self.container.close()

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def open_video(path: str | Path) -> Iterator[av.container.InputContainer]:
    """A video to read, from a local path or an s3:// URI (PyAV reads the object through a seekable file)."""
    if storage.is_remote(path):
        with storage.open_input(path) as f, av.open(f) as container:
            yield container
    else:
        with av.open(str(path)) as container:
            yield container


def decode_frames(path: str | Path, keep: Callable[[int], bool] | None = None,
                  format: str = "rgb24") -> Iterator[tuple[float, np.ndarray]]:
    """Yields (presentation time in s, frame) for every frame of the first video stream, or only for the frame
    indices `keep` accepts (the others are decoded but not converted): RGB uint8, or uint16 depth in mm with
    format "gray16le" (an archive) or "gray12le" (an export)."""
    with open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        reformatter = av.video.reformatter.VideoReformatter()  # reused: a fresh one per frame is 2x slower
        for i, frame in enumerate(container.decode(stream)):
            if keep is None or keep(i):
                yield float(frame.time), reformatter.reformat(frame, format=format).to_ndarray()


def codec_of(path: str | Path) -> str:
    with open_video(path) as container:
        return container.streams.video[0].codec_context.name
