"""DDP on 2 CPU processes (the path GPUs take), one directory per job, and the SLURM recipe."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from hydra.utils import instantiate
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_only

from helpers.configs import steps_per_epoch
from vaelab.data.in_memory import TensorBatchLoader
from vaelab.train import train

pytestmark = pytest.mark.integration

# A few steps: one epoch of digits, in global batches of data.batch_size.
SMALL = ["trainer.max_epochs=1", "logger=csv", "model.latent_dim=4"]
# DDP averages the same global batch's gradient as one process, but each rank draws its own
# posterior noise for its half, so the runs differ by Monte-Carlo noise only: well under
# 1 nat of test ELBO, where one more epoch of training moves it by several nats.
ELBO_TOLERANCE_NATS = 1.0


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("outputs/train/**/.hydra"))


def test_ddp_sim_matches_one_process_and_writes_one_run_dir(train_cli, make_cfg, tmp_path):
    train_cli(["trainer=ddp_sim", *SMALL])
    (run_dir,) = run_dirs(tmp_path)
    ddp = json.loads((run_dir / "metrics.json").read_text())
    # the launched rank trained from its parent's resolved config, in the parent's directory
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert sorted(p.name for p in (tmp_path / "outputs" / "train" / "runs").iterdir()) == \
        [run_dir.name]

    cfg = make_cfg(SMALL, output_dir=tmp_path / "single")
    single = train(cfg)
    # the global batch stays data.batch_size: both ran the same number of optimiser steps
    ddp_steps = _global_step(run_dir / "checkpoints" / "last.ckpt")
    assert ddp_steps == _global_step(tmp_path / "single" / "checkpoints" / "last.ckpt") == \
        steps_per_epoch(cfg)
    assert abs(ddp["test/elbo"] - single["test/elbo"]) < ELBO_TOLERANCE_NATS
    untrained = train(make_cfg([*SMALL, "train=false"], output_dir=tmp_path / "untrained"))
    assert abs(ddp["test/elbo"] - untrained["test/elbo"]) > 5 * ELBO_TOLERANCE_NATS


def _global_step(ckpt: Path) -> int:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"]


@pytest.mark.slow  # 13-21 s: kept out of the default run's 15 minutes
def test_ddp_multirun_writes_one_dir_per_job(train_cli, tmp_path):
    train_cli(["-m", "trainer=ddp_sim", "trainer.max_epochs=1", "logger=csv",
               "model.latent_dim=2,4"])
    (sweep,) = (tmp_path / "outputs" / "train" / "multiruns").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 2
    assert [job.name for job in jobs] == ["0_latent_dim-2", "1_latent_dim-4"]
    assert not (tmp_path / "outputs" / "train" / "runs").exists()
    configs = [yaml.safe_load((job / "config_resolved.yaml").read_text()) for job in jobs]
    for job, cfg in zip(jobs, configs, strict=True):
        assert json.loads((job / "metrics.json").read_text())["test/elbo"] < 0
        assert cfg["run_name"] == job.name
    # the sweep's jobs share one dashboard group
    assert configs[0]["run_group"] == configs[1]["run_group"] == f"train/{sweep.name}"


def test_slurm_recipe_composes_and_builds_the_submitit_launcher(make_cfg):
    cfg = make_cfg(["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4",
                    "trainer.num_nodes=2", "hydra.launcher.partition=gpu"])
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher"
    params = launcher.params
    assert (params["nodes"], params["tasks_per_node"], params["gpus_per_node"]) == (2, 4, 4)
    assert params["partition"] == "gpu"
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.sync_batchnorm


def test_lightning_takes_ranks_from_slurm(make_cfg, monkeypatch):
    # what each of the 4 tasks (2 nodes x 2 devices) of a SLURM job sees; this is the last one
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    for name, value in {"SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2",
                        "SLURM_PROCID": "3", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
                        "SLURM_NODELIST": "gpu[01-02]", "SLURM_JOB_NAME": "vaelab",
                        "SLURM_JOB_ID": "42"}.items():
        monkeypatch.setenv(name, value)
    cfg = make_cfg(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                    "trainer.num_nodes=2", "trainer.sync_batchnorm=false"])
    trainer = instantiate(cfg.trainer)
    assert isinstance(trainer.strategy.cluster_environment, SLURMEnvironment)
    assert (trainer.global_rank, trainer.local_rank, trainer.node_rank) == (3, 1, 1)
    assert trainer.world_size == 4


def test_submitit_local_launcher_runs_a_job(train_cli, tmp_path):
    train_cli(["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
               "trainer.max_epochs=1", "logger=csv", "model.latent_dim=2"], timeout=180)
    (sweep,) = (tmp_path / "outputs" / "train" / "multiruns").iterdir()
    job_dirs = [p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(job_dirs) == 1
    assert (sweep / ".submitit").is_dir()
    assert json.loads((job_dirs[0] / "metrics.json").read_text())["test/elbo"] < 0


def shards(n: int, world_size: int = 2, batch_size: int = 32) -> list[list[int]]:
    """Each rank's training batch sizes for n images."""
    images, labels = torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.zeros(n)
    return [[len(x) for x, _ in TensorBatchLoader(images, labels, batch_size, shuffle=True,
                                                  same_steps=True, rank=r,
                                                  world_size=world_size)]
            for r in range(world_size)]


def test_ddp_ranks_take_the_same_number_of_training_steps():
    # 127 images over 2 ranks, per-rank batch 32: one global batch of 64, then the last 63
    # split 32 + 31, so every image trains once an epoch
    assert shards(127) == [[32, 32], [32, 31]]
    # a last global batch with fewer than 2 images per rank is left out: each rank must step,
    # and on a batch of at least two (batch statistics)
    assert shards(67) == [[32], [32]]
    assert shards(68) == [[32, 2], [32, 2]]
    assert shards(5, batch_size=128) == [[3], [2]]  # less than one batch: one short batch
    assert shards(3, batch_size=128) == [[], []]
    images, labels = torch.zeros(127, 1, 2, 2, dtype=torch.uint8), torch.zeros(127)
    seen = [x for r in (0, 1) for x, _ in TensorBatchLoader(images, labels, 32, rank=r,
                                                            world_size=2)]
    assert sum(len(x) for x in seen) == 127  # evaluation sees every image once
