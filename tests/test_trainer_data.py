"""The training data loader over our exported LeRobot v3.0 datasets (H.264 160x120 from the session fixture):
frames, normalized vectors and their LingBot layout, padding, the sampler and its resumption, errors."""

from __future__ import annotations

import json
import pickle
import shutil

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from jobs.export import run_norm_stats
from pipeline.video import decode_frames
from trainer.data import Mixture, SampleError, ShardDataset
from trainer.frames import to_rgb
from trainer.sampler import MixtureSampler

# unified slots of LingBot's joints [arm.position: 14, effector.position: 2]: source columns per slot
LAYOUT = {"aloha": {"arm": [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12], "eff": [6, 13]},
          "agibot_g1": {"arm": list(range(14)), "eff": [14, 15]}}


@pytest.fixture(scope="module")
def shards(exported, tmp_path_factory):
    """{robot: (dataset, norm stats file)}: aloha with arm actions relative to the state, agibot absolute."""
    _, _, reports = exported
    out, tmp = {}, tmp_path_factory.mktemp("norm")
    for robot, relative in (("aloha", {"arm.position"}), ("agibot_g1", set())):
        path = tmp / f"{robot}.json"
        path.write_text(json.dumps(run_norm_stats([reports[robot].path], relative)))
        out[robot] = (reports[robot].path, path)
    return out


def columns(root):
    t = pq.read_table(sorted((root / "data").glob("*/*.parquet")))
    return {"state": np.stack(t["observation.state"].to_numpy(zero_copy_only=False)).astype(np.float64),
            "action": np.stack(t["action"].to_numpy(zero_copy_only=False)).astype(np.float64),
            "episode": t["episode_index"].to_numpy(), "task_index": t["task_index"].to_numpy()}


def episodes(root):
    return pq.read_table(sorted((root / "meta" / "episodes").glob("*/*.parquet"))).to_pylist()


def probe_indices(root):
    """First, middle and last frame of the first, a middle and the last episode."""
    eps = episodes(root)
    return sorted({i for e in (eps[0], eps[len(eps) // 2], eps[-1])
                   for i in (e["dataset_from_index"], (e["dataset_from_index"] + e["dataset_to_index"]) // 2,
                             e["dataset_to_index"] - 1)})


@pytest.mark.parametrize("size", [None, (96, 80)])
def test_images_are_the_frames_of_a_sequential_decode(shards, size):
    root, stats = shards["aloha"]
    keys = ["observation.images.cam_high", "observation.images.cam_left_wrist", "observation.images.cam_right_wrist"]
    ds = ShardDataset(root, stats, size=size or (160, 120))
    eps, fps = episodes(root), ds.fps
    sequential = {}
    for key in keys:
        path = root / f"videos/{key}/chunk-000/file-000.mp4"
        if size is None:  # native size: our reader against the pipeline's own sequential decoder
            sequential[key] = [rgb for _, rgb in decode_frames(path)]
        else:  # resized: the same conversion applied to every frame of a sequential decode
            reformatter = av.video.reformatter.VideoReformatter()
            with av.open(str(path)) as c:
                sequential[key] = [to_rgb(f, size, reformatter) for f in c.decode(video=0)]
    for i in probe_indices(root):
        item = ds[i]
        e = eps[item["episode_index"]]
        assert item["frame_index"] == i - e["dataset_from_index"]
        assert item["images"].dtype == torch.uint8 and item["images"].shape == (3, 3, ds.size[1], ds.size[0])
        for v, key in enumerate(keys):  # top, left wrist, right wrist
            k = round(e[f"videos/{key}/from_timestamp"] * fps) + item["frame_index"]
            np.testing.assert_array_equal(item["images"][v].numpy().transpose(1, 2, 0), sequential[key][k])


def normalized(x, s, mode):
    s = {k: np.asarray(v, np.float64) for k, v in s.items()}
    if mode == "meanstd":
        return (x - s["mean"]) / (s["std"] + 1e-6)
    return (x - s["q01"]) / (s["q99"] - s["q01"] + 1e-6) * 2 - 1


@pytest.mark.parametrize("robot,mode", [("aloha", "meanstd"), ("agibot_g1", "bounds_99")])
def test_state_and_actions_are_the_rows_normalized_and_placed(shards, robot, mode):
    root, stats_path = shards[robot]
    stats = json.loads(stats_path.read_text())["norm_stats"]
    cols, eps = columns(root), episodes(root)
    tasks = dict(zip(*pq.read_table(root / "meta" / "tasks.parquet").to_pydict().values()))
    arm, eff = LAYOUT[robot]["arm"], LAYOUT[robot]["eff"]
    relative = robot == "aloha"
    ds = ShardDataset(root, stats_path, mode=mode, size=(32, 32))
    for i in probe_indices(root):
        item = ds[i]
        last = eps[cols["episode"][i]]["dataset_to_index"] - 1
        rows = np.minimum(np.arange(i, i + 50), last)
        s, a = cols["state"][i], cols["action"][rows]
        state, actions = np.zeros(75), np.zeros((50, 75))
        state[:len(arm)] = normalized(s[arm], stats["observation.state.arm.position"], mode)
        state[14:16] = normalized(s[eff], stats["observation.state.effector.position"], mode)
        actions[:, :len(arm)] = normalized(a[:, arm] - (s[arm] if relative else 0), stats["action.arm.position"], mode)
        actions[:, 14:16] = normalized(a[:, eff], stats["action.effector.position"], mode)
        np.testing.assert_allclose(item["state"].numpy(), state, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(item["actions"].numpy(), actions, rtol=1e-5, atol=1e-5)
        mask = np.zeros(75, bool)
        mask[:len(arm)] = mask[14:16] = True
        np.testing.assert_array_equal(item["joint_mask"].numpy(), mask)
        assert item["state"].dtype == item["actions"].dtype == torch.float32
        assert item["task"] == tasks[cols["task_index"][i]]


def test_action_is_pad_past_the_episode_end(shards):
    root, stats = shards["agibot_g1"]
    ds = ShardDataset(root, stats, size=(32, 32))
    for e in episodes(root)[:3]:
        end = e["dataset_to_index"]
        for back in (1, 10, 50):
            item = ds[end - back]
            np.testing.assert_array_equal(item["action_is_pad"].numpy(), np.arange(50) >= back)
            # padded rows repeat the last real action
            padded, last = item["actions"][back:].numpy(), item["actions"][back - 1].numpy()
            np.testing.assert_array_equal(padded, np.broadcast_to(last, padded.shape))
        assert not ds[e["dataset_from_index"]]["action_is_pad"].any()


def test_sampler_is_deterministic_and_disjoint_across_ranks():
    sizes = [500, 120, 37]
    run = lambda **kw: list(MixtureSampler(sizes, [1, 3, 2], **kw))  # noqa: E731
    assert run(seed=4, rank=1, world_size=3) == run(seed=4, rank=1, world_size=3)
    assert run(seed=4) != run(seed=5)
    later = MixtureSampler(sizes, [1, 3, 2], seed=4)
    later.set_epoch(1)
    assert list(later) != run(seed=4)
    # the small datasets repeat within a rank (weights far above their size share), never across ranks
    streams = [set(run(seed=4, rank=r, world_size=3)) for r in range(3)]
    assert all(not (streams[a] & streams[b]) for a in range(3) for b in range(a + 1, 3))
    assert len(streams[0]) < len(run(seed=4, rank=0, world_size=3))


def test_mixture_weights_are_respected(shards):
    sizes = [1000, 200, 50]
    drawn = np.array(list(MixtureSampler(sizes, [0.6, 0.3, 0.1], seed=0, samples_per_epoch=20000)))
    share = np.bincount(np.searchsorted(np.cumsum(sizes), drawn, side="right"), minlength=3) / len(drawn)
    np.testing.assert_allclose(share, [0.6, 0.3, 0.1], atol=0.015)
    mix = Mixture([ShardDataset(root, stats, size=(32, 32)) for root, stats in shards.values()])
    i = mix.sizes[0] + 5
    assert mix[i]["dataset_index"] == 1 and mix[i]["frame_index"] == mix.datasets[1][5]["frame_index"]
    copy = pickle.loads(pickle.dumps(mix))  # as a spawned DataLoader worker receives it: no open files inside
    assert torch.equal(copy[i]["images"], mix[i]["images"])


def test_resumed_loader_continues_exactly(shards):
    mix = Mixture([ShardDataset(root, stats, size=(32, 32)) for root, stats in shards.values()])

    def loader(sampler):
        return torch.utils.data.DataLoader(mix, batch_size=4, sampler=sampler, num_workers=2, prefetch_factor=2,
                                           persistent_workers=True)

    def keys(batch):
        return list(zip(*(batch[k].tolist() for k in ("dataset_index", "episode_index", "frame_index"))))

    sampler = MixtureSampler(mix.sizes, [1, 1], seed=7, world_size=2, rank=1, samples_per_epoch=80)
    sampler.set_epoch(2)
    seen, saved = [], None
    for n, batch in enumerate(loader(sampler)):
        seen.append(keys(batch))
        sampler.advance(len(batch["task"]))
        if n == 2:
            saved = sampler.state_dict()  # the workers have prefetched further by now
    resumed = MixtureSampler(mix.sizes, [1, 1], seed=7, world_size=2, rank=1, samples_per_epoch=80)
    resumed.load_state_dict(saved)
    resumed.set_epoch(2)  # the trainer's epoch loop re-entering the saved epoch keeps its position
    assert [keys(b) for b in loader(resumed)] == seen[3:]
    with pytest.raises(ValueError, match="seed"):
        MixtureSampler(mix.sizes, [1, 1], seed=8, world_size=2, rank=1, samples_per_epoch=80).load_state_dict(saved)


def test_corrupt_video_names_episode_and_frame(shards, tmp_path):
    root, stats = shards["aloha"]
    broken = tmp_path / "aloha"
    shutil.copytree(root, broken)
    video = broken / "videos/observation.images.cam_left_wrist/chunk-000/file-000.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    ds = ShardDataset(broken, stats, size=(32, 32))
    e = episodes(broken)[1]
    i = e["dataset_from_index"] + 3
    with pytest.raises(SampleError, match=rf"episode {e['episode_index']} frame 3: observation.images.cam_left_wrist"):
        ds[i]
