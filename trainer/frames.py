"""Random access to single video frames with PyAV, for the training data loader.

Our exports are constant frame rate with a keyframe every 2 frames and no B-frames, so a seek to the keyframe at
or before a timestamp followed by decoding forward reaches any frame after at most 2 decoded frames. Every worker
process keeps a few containers open (LRU) and one VideoReformatter that converts and resizes in a single
swscale pass, single-threaded: the DataLoader workers are the parallelism.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import av
import numpy as np


def seek_frame(container: av.container.InputContainer, t: float, fps: float) -> av.VideoFrame:
    """The frame presented at `t` seconds: the one whose pts lies within half a frame interval of t. Raises
    LookupError rather than return a neighbouring frame."""
    stream = container.streams.video[0]
    tb = stream.time_base
    target = t * tb.denominator / tb.numerator  # in pts units
    half = 0.5 * tb.denominator / (tb.numerator * fps)
    container.seek(round(target), stream=stream, backward=True)
    for frame in container.decode(stream):
        if frame.pts > target + half:
            raise LookupError(f"no frame at {t:.4f} s: decoding reached {float(frame.time):.4f} s without one")
        if frame.pts >= target - half:
            return frame
    raise LookupError(f"no frame at {t:.4f} s: the video ends before it")


def to_rgb(frame: av.VideoFrame, size: tuple[int, int],
           reformatter: av.video.reformatter.VideoReformatter) -> np.ndarray:
    """RGB uint8 (H, W, 3) at size = (W, H): colour conversion and area resize in one single-threaded pass."""
    w, h = size
    return reformatter.reformat(frame, width=w, height=h, format="rgb24", interpolation="AREA", threads=1).to_ndarray()


class FrameReader:
    """Reads frames by timestamp from a few open files. Open containers belong to the process that opened them:
    a forked or unpickled copy starts with none."""

    def __init__(self, size: tuple[int, int], open_files: int = 24):
        self.size, self.open_files = size, open_files
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._open: OrderedDict[str, av.container.InputContainer] = OrderedDict()
        self._reformatter = av.video.reformatter.VideoReformatter()

    def __getstate__(self) -> dict:
        return {"size": self.size, "open_files": self.open_files}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    def read(self, path: str, t: float, fps: float) -> np.ndarray:
        """RGB uint8 (H, W, 3) of the frame of `path` presented at `t` seconds. A file that fails is closed, so
        the next read starts from a fresh container."""
        container = self._container(path)
        try:
            return to_rgb(seek_frame(container, t, fps), self.size, self._reformatter)
        except Exception:
            self._open.pop(path).close()
            raise

    def _container(self, path: str) -> av.container.InputContainer:
        if self._pid != os.getpid():
            self._reset()  # forked: the parent's containers share its file offsets, never use them here
        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path]
        if len(self._open) >= self.open_files:
            self._open.popitem(last=False)[1].close()
        container = av.open(path)
        container.streams.video[0].thread_count = 1
        self._open[path] = container
        return container
