"""The FSDP2 trainer end to end on CPU: world size 2 through torchrun (gloo) learns, an interrupted run resumed
from its DCP checkpoint continues exactly, world size 1 runs in-process, and the exported weights evaluate;
TensorBoard gets the metrics rows, W&B fails early when missing, torch.compile and activation checkpointing give
the same steps, and a Qwen2.5-VL-prefixed policy trains, exports and evaluates."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from jobs.cli import app
from jobs.export import run_norm_stats
from scripts.tiny_qwen2_5_vl import build as build_tiny_vlm
from trainer.config import load_config
from trainer.distributed import Dist
from trainer.train import build_data, train

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def datasets(exported, tmp_path_factory):
    """Both exported robots with norm stats beside them (written to a private folder)."""
    _, _, reports = exported
    folder = tmp_path_factory.mktemp("norm")
    specs = []
    for robot, r in sorted(reports.items()):
        stats = folder / f"{robot}.json"
        stats.write_text(json.dumps(run_norm_stats([r.path], {"arm.position"})))
        specs.append({"path": str(r.path), "norm_stats": str(stats), "weight": 1.0})
    return specs


def _config(tmp_path: Path, datasets: list[dict], name: str, **over) -> Path:
    cfg = {"datasets": datasets, "output_dir": str(tmp_path / name),
           "model": {"image_size": 16, "patch_size": 8, "width": 32, "depth": 2, "heads": 2, "max_text_len": 16,
                     "num_steps": 4},
           "steps": 30, "micro_batch": 4, "lr": 3e-3, "warmup_steps": 2, "num_workers": 1, "save_every": 1000,
           "log_every": 10, "seed": 3, **over}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _torchrun(config: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "jobs.cli", "train", str(config), "--nproc", "2", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def _losses(config: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (load_config(config).run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows}


def test_two_ranks_learn_and_resume_exactly(datasets, tmp_path):
    whole = _config(tmp_path, datasets, "whole")
    _torchrun(whole)
    a = _losses(whole)
    assert sorted(a) == list(range(1, 31))
    assert np.mean([a[s] for s in range(26, 31)]) < 0.8 * np.mean([a[s] for s in range(1, 6)])

    split = _config(tmp_path, datasets, "split")
    _torchrun(split, "--stop-at", "20")
    out = load_config(split).run_dir
    assert (out / "checkpoints" / "latest").read_text() == "step-00000020" and not (out / "export").exists()
    _torchrun(split, "--resume")
    b = _losses(split)
    assert sorted(b) == list(range(1, 31))
    for step in range(21, 31):  # the resumed steps match the uninterrupted run
        assert abs(b[step] - a[step]) <= 1e-6, (step, b[step], a[step])
    assert (out / "export" / "model.safetensors").exists()


def test_one_process_then_eval_on_held_out_episodes(datasets, tmp_path):
    held_out = [{**datasets[0], "holdout_episodes": [0, 1]}, *datasets[1:]]
    config = _config(tmp_path, held_out, "single", steps=6)
    cfg = load_config(config)
    mixture, _ = build_data(cfg, Dist(0, 1, 0, torch.device("cpu")))
    assert 0 not in {int(e) for e in mixture.datasets[0].frames["episode_index"][mixture.datasets[0].rows]}
    assert len(mixture.datasets[0]) < len(mixture.datasets[0].frames["episode_index"])
    rows = train(cfg)
    assert [r["step"] for r in rows] == list(range(1, 7)) and all(np.isfinite(r["loss"]) for r in rows)
    assert all(0 <= r["data_wait_fraction"] <= 1 and r["samples_per_s"] > 0 for r in rows)
    export = load_config(config).run_dir / "export"
    res = CliRunner().invoke(app, ["eval", str(export), datasets[0]["path"], "--norm-stats",
                                   datasets[0]["norm_stats"], "--episodes", "0,1", "--every", "5"])
    assert res.exit_code == 0, res.output
    assert "MSE" in res.output and "arm.position" in res.output and "effector.position" in res.output


def test_activation_checkpointing_gives_the_same_steps(datasets, tmp_path):
    plain = train(load_config(_config(tmp_path, datasets, "plain", steps=3, num_workers=0)))
    recomputed = train(load_config(_config(tmp_path, datasets, "ac", steps=3, num_workers=0,
                                           activation_checkpointing=True)))
    assert [r["loss"] for r in recomputed] == pytest.approx([r["loss"] for r in plain], abs=1e-6)


def test_tensorboard_scalars_equal_the_metrics_rows(datasets, tmp_path, caplog):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = _config(tmp_path, datasets, "tb", steps=4, num_workers=0)
    with caplog.at_level(logging.INFO, logger="trainer"):
        rows = train(load_config(config))
    out = load_config(config).run_dir
    assert any(m.startswith("TensorBoard logs in") for m in caplog.messages)
    assert [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()] == rows
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    keys = [k for k in rows[0] if k != "step"]
    assert sorted(events.Tags()["scalars"]) == sorted(f"train/{k}" for k in keys)
    for key in keys:  # TensorBoard keeps float32
        logged = [(e.step, e.value) for e in events.Scalars(f"train/{key}")]
        assert logged == [(r["step"], float(np.float32(r[key]))) for r in rows], key


def test_wandb_project_without_wandb_fails_before_starting(datasets, tmp_path):
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    config = _config(tmp_path, datasets, "wandb", wandb_project="vla")
    with pytest.raises(ValueError, match="wandb_project is 'vla' but wandb is not installed"):
        load_config(config)
    res = CliRunner().invoke(app, ["train", str(config)])
    assert res.exit_code == 2 and "wandb is not installed" in res.output, res.output
    assert not (tmp_path / "wandb").exists()  # nothing started: not even the output folder


def test_compile_gives_the_same_steps(datasets, tmp_path):
    """aot_eager: dynamo captures the blocks and AOT autograd runs their forward and backward graphs; inductor's
    code generation takes about 100 s on this 2-core CPU."""
    eager = train(load_config(_config(tmp_path, datasets, "eager", steps=3, num_workers=0)))
    torch._dynamo.reset()
    compiled = train(load_config(_config(tmp_path, datasets, "compiled", steps=3, num_workers=0, compile=True,
                                         compile_backend="aot_eager")))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # the blocks really were compiled
    assert all(np.isfinite(r["loss"]) for r in compiled)
    assert [r["loss"] for r in compiled] == pytest.approx([r["loss"] for r in eager], abs=1e-5)


def test_qwen_prefix_trains_resumes_exports_and_evaluates(datasets, tmp_path):
    vlm = build_tiny_vlm(tmp_path / "tiny-qwen2_5_vl")
    model = {"prefix": "qwen2_5_vl", "vlm_path": str(vlm), "image_size": 32, "width": 32, "heads": 4,
             "max_text_len": 16, "num_steps": 2}
    config = _config(tmp_path, datasets, "qwen", model=model, steps=3, num_workers=0)
    rows = train(load_config(config))
    assert [r["step"] for r in rows] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in rows)
    split = load_config(_config(tmp_path, datasets, "qwen-split", model=model, steps=3, num_workers=0))
    train(split, stop_at=2)
    assert train(split, resume=True)[0]["loss"] == pytest.approx(rows[2]["loss"], abs=1e-6)
    export = load_config(config).run_dir / "export"
    assert json.loads((export / "config.json").read_text())["policy"]["vlm_path"] == str(vlm)
    res = CliRunner().invoke(app, ["eval", str(export), datasets[0]["path"], "--norm-stats",
                                   datasets[0]["norm_stats"], "--episodes", "0", "--every", "10"])
    assert res.exit_code == 0, res.output
    assert "MSE" in res.output and "arm.position" in res.output
