"""Runs in the official lerobot venv (scripts/venv.sh lerobot): writes the episodes of a spec file with
LeRobot's own writer (LeRobotDataset.create + add_frame + save_episode + finalize) and prints the seconds it took.
Driven by benchmarks/export.py; the work timed is the same as ours: decode source frames, encode, stats, parquet.
"""

import json
import sys
import time

import av
import numpy as np
import pyarrow.parquet as pq
from lerobot.datasets.lerobot_dataset import LeRobotDataset

spec = json.load(open(sys.argv[1]))
root = sys.argv[2]
features = {k: {**f, "shape": tuple(f["shape"])} for k, f in spec["features"].items()}  # lerobot compares tuples
t0 = time.perf_counter()
ds = LeRobotDataset.create(repo_id="local/bench", fps=spec["fps"], root=root, robot_type=spec["robot"],
                           features=features, use_videos=True, image_writer_threads=spec["threads"])
signals = {}
for ep in spec["episodes"]:
    if ep["frames_uri"] not in signals:
        t = pq.read_table(ep["frames_uri"], columns=["observation.state", "action"])
        signals[ep["frames_uri"]] = [np.stack(t[c].to_numpy(zero_copy_only=False)).astype(np.float32) for c in t.column_names]
    state, action = signals[ep["frames_uri"]]
    frames = {}
    for key, uri in ep["cameras"].items():
        with av.open(uri) as c:
            frames[key] = [f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0))
                           if ep["start"] <= i < ep["end"]]
    for k, row in enumerate(range(ep["start"], ep["end"])):
        ds.add_frame({"observation.state": state[row], "action": action[row], "task": ep["task"],
                      **{key: frames[key][k] for key in frames}})
    ds.save_episode()
ds.finalize()
print(json.dumps({"seconds": time.perf_counter() - t0}))
