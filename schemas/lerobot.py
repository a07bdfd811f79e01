"""LeRobot dataset contract, codebase v3.0 (read by lerobot 0.4.x-0.6.x and the LingBot-VLA trainer).

Layout, file templates and the invariants loaders rely on (see shared reference lerobot-format.md):
`index` equals the row position over all data files in (chunk, file) order; episode_index is 0..N-1 and the
row position in meta/episodes; task_index is the row position in meta/tasks.parquet (pandas index = task);
timestamp = frame_index / fps; a video key's episode starts at from_timestamp inside its mp4.
"""

from __future__ import annotations

import json

import pyarrow as pa

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 200
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
CODECS = {"av1": "libsvtav1", "h264": "libx264"}


def chunk_file(n: int) -> tuple[int, int]:
    """The n-th file of a series -> (chunk_index, file_index), CHUNKS_SIZE files per chunk."""
    return divmod(n, CHUNKS_SIZE)


def video_feature(height: int, width: int, fps: int, codec: str, gop: int, crf: int) -> dict:
    return {
        "dtype": "video", "shape": [height, width, 3], "names": ["height", "width", "channels"],
        # 0.6-style info block: lerobot's merge tool compares it; 0.4.x ignores the extra keys.
        "info": {"video.height": height, "video.width": width, "video.codec": codec, "video.pix_fmt": "yuv420p",
                 "video.fps": fps, "video.channels": 3, "has_audio": False, "video.g": gop, "video.crf": crf,
                 "video.preset": 12 if codec == "av1" else None, "video.fast_decode": 0,
                 "video.video_backend": "pyav", "video.extra_options": {}, "is_depth_map": False},
    }


DEPTH_MAX_MM = 4095  # exported depth is 12-bit millimetres: farther readings are clipped to this


def depth_feature(height: int, width: int, fps: int, gop: int) -> dict:
    """A depth camera: lossless 12-bit HEVC whose gray values are millimetres (0 = no reading, at most DEPTH_MAX_MM)."""
    feature = video_feature(height, width, fps, "hevc", gop, 0)
    feature["info"] |= {"video.pix_fmt": "gray12le", "video.channels": 1, "video.crf": None, "video.preset": None,
                        "video.is_depth_map": True, "is_depth_map": True, "depth_unit": "mm"}
    return feature


def vector_feature(names: list[str]) -> dict:
    return {"dtype": "float32", "shape": [len(names)], "names": list(names)}


DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}


def data_schema(features: dict) -> pa.Schema:
    """Arrow schema of the data parquet: fixed-size float32 lists for vectors, scalars for the rest; video
    features have no column. The `huggingface` metadata uses "Sequence", which datasets 3.x and 4.x read."""
    fields, hf = [], {}
    for name, f in features.items():
        if f["dtype"] == "video":
            continue
        scalar = pa.float32() if f["dtype"] == "float32" else pa.int64()
        if f["shape"] == [1]:
            fields.append(pa.field(name, scalar))
            hf[name] = {"dtype": f["dtype"], "_type": "Value"}
        else:
            fields.append(pa.field(name, pa.list_(scalar, f["shape"][0])))
            hf[name] = {"feature": {"dtype": f["dtype"], "_type": "Value"}, "length": f["shape"][0], "_type": "Sequence"}
    return pa.schema(fields, metadata={"huggingface": json.dumps({"info": {"features": hf}})})


def tasks_table(tasks: list[str], index_name: str = "task", column: str = "task_index") -> pa.Table:
    """meta/tasks.parquet (and subtasks.parquet) as pandas writes a DataFrame indexed by the task string;
    without the pandas metadata lerobot silently loads every task as the integer 0."""
    pandas_meta = {
        "index_columns": [index_name], "column_indexes": [], "pandas_version": "2.2.3", "creator": {
            "library": "pyarrow", "version": pa.__version__},
        "columns": [
            {"name": column, "field_name": column, "pandas_type": "int64", "numpy_type": "int64", "metadata": None},
            {"name": index_name, "field_name": index_name, "pandas_type": "unicode", "numpy_type": "object",
             "metadata": None}],
    }
    schema = pa.schema([(column, pa.int64()), (index_name, pa.string())], metadata={"pandas": json.dumps(pandas_meta)})
    return pa.table({column: list(range(len(tasks))), index_name: list(tasks)}, schema=schema)
