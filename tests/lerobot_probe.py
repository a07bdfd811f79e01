"""Runs inside the official lerobot 0.4.x virtualenv (scripts/venv.sh lerobot), not in ours: loads a dataset
with LeRobotDataset offline and dumps what the loader returns for some indices, for tests/test_lerobot_loader.py.

    python tests/lerobot_probe.py ROOT OUT.npz HORIZON INDEX...
"""

import json
import sys

import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset

root, out, horizon, indices = sys.argv[1], sys.argv[2], int(sys.argv[3]), [int(i) for i in sys.argv[4:]]
info = json.load(open(f"{root}/meta/info.json"))
fps = info["fps"]
ds = LeRobotDataset("local/export", root=root, delta_timestamps={"action": [t / fps for t in range(horizon)]})
cams = [k for k, f in info["features"].items() if f["dtype"] == "video"]
dump = {"len": np.array(len(ds)), "num_episodes": np.array(ds.num_episodes)}
tasks = []
for i in indices:
    item = ds[i]
    for key in ("observation.state", "action", "action_is_pad", "episode_index", "frame_index", "index"):
        dump[f"{i}/{key}"] = item[key].numpy()
    for cam in cams:
        dump[f"{i}/{cam}"] = (item[cam].numpy() * 255).round().astype(np.uint8)  # CHW float [0,1] -> uint8
    tasks.append(item["task"])
dump["tasks"] = np.array(json.dumps(tasks))
dump["backend"] = np.array(ds.video_backend)
np.savez(out, **dump)
