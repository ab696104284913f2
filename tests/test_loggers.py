"""Dashboards: W&B (offline), MLflow (local store), TensorBoard, several at once."""

import json
import re
import socket
import time
from pathlib import Path

import mlflow
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vaelab.builders import MLFLOW_CONNECT_TIMEOUT, instantiate_loggers
from vaelab.train import train

pytestmark = pytest.mark.integration

RUN = ["trainer.max_epochs=1", "model.latent_dim=2", "tags=[test,loggers]"]


def wandb_records(path: Path):
    """The protobuf records of an offline W&B run file (LevelDB log format: 32 KiB blocks of
    7-byte-headed chunks after a 7-byte file header), as `wandb sync` reads them."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    block, pos, pending = 32768, 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk  # FULL/FIRST, MIDDLE/LAST
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record


def wandb_run(run_dir: Path, timeout: float = 60) -> tuple[dict, dict]:
    """(summary, config) of the single offline W&B run under run_dir, once W&B's service (its
    own process, which may still be writing after finish() returns) has written the run's exit
    record."""
    (run_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    deadline = time.monotonic() + timeout
    while not any(r.WhichOneof("record_type") == "exit" for r in wandb_records(run_file)):
        assert time.monotonic() < deadline, f"{run_file} has no exit record after {timeout} s"
        time.sleep(0.2)
    summary, config = {}, {}
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind in ("summary", "config"):
            target = summary if kind == "summary" else config
            for item in getattr(record, kind).update:
                target[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return summary, config


def mlflow_run(store: Path, experiment: str):
    mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=[experiment])
    assert len(runs) == 1
    return runs.iloc[0]


@pytest.fixture(autouse=True)
def wandb_home(tmp_path, monkeypatch):
    # W&B keeps caches, settings and its service's logs under the home directory otherwise
    for name in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb_home"))


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory) -> Path:
    # one SQLite store for the module: creating its schema takes seconds
    return tmp_path_factory.mktemp("mlflow")


def test_wandb_offline_run_holds_metrics_and_config(make_cfg, tmp_path):
    metrics = train(make_cfg([*RUN, "logger=wandb"]))
    summary, config = wandb_run(tmp_path / "run")
    assert summary["val/elbo"] == pytest.approx(metrics["val/elbo"])
    assert config["model/params/total"] > 0 and "git_commit" in config
    assert config["model"]["latent_dim"] == 2


def test_mlflow_run_holds_metric_params_and_tags(make_cfg, mlflow_store):
    metrics = train(make_cfg([*RUN, "logger=mlflow", f"paths.log_dir={mlflow_store}",
                              "logger.mlflow.experiment_name=only_mlflow"]))
    run = mlflow_run(mlflow_store, "only_mlflow")
    assert run["metrics.val/elbo"] == pytest.approx(metrics["val/elbo"])
    assert run["params.model/latent_dim"] == "2"
    assert int(run["params.model/params/total"]) > 0
    assert run["tags.mlflow.runName"] == "run" and run["tags.tags"] == "test,loggers"


def test_many_loggers_write_every_dashboard(make_cfg, tmp_path, mlflow_store):
    metrics = train(make_cfg([*RUN, "logger=many", f"paths.log_dir={mlflow_store}",
                              "logger.mlflow.experiment_name=many"]))
    run_dir = tmp_path / "run"
    assert wandb_run(run_dir)[0]["val/elbo"] == pytest.approx(metrics["val/elbo"])
    assert mlflow_run(mlflow_store, "many")["metrics.val/elbo"] == \
        pytest.approx(metrics["val/elbo"])
    board = EventAccumulator(str(run_dir / "tensorboard" / "version_0"))
    board.Reload()
    assert board.Scalars("val/elbo")[-1].value == pytest.approx(metrics["val/elbo"])
    assert (run_dir / "csv" / "version_0" / "metrics.csv").is_file()


def test_sweep_jobs_share_a_group_single_runs_have_none(make_cfg):
    cfg = make_cfg(["hydra.mode=MULTIRUN", "hydra.sweep.dir=outputs/train/multiruns/sweep_a"])
    assert cfg.run_group == "train/sweep_a"
    assert make_cfg([]).run_group is None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_mlflow_server_is_one_clear_error_before_the_run(make_cfg):
    """MLflow's own client would retry it for minutes."""
    port = free_port()
    cfg = make_cfg(["logger=mlflow", f"logger.mlflow.tracking_uri=http://127.0.0.1:{port}"])
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=re.escape(
            f"logger.mlflow.tracking_uri=http://127.0.0.1:{port}: no MLflow server answers at "
            f"127.0.0.1:{port}")):
        instantiate_loggers(cfg.logger)
    assert time.monotonic() - started < MLFLOW_CONNECT_TIMEOUT
    with socket.create_server(("127.0.0.1", 0)) as server:  # a server that listens: no error
        listening = server.getsockname()[1]
        cfg = make_cfg(["logger=many",
                        f"logger.mlflow.tracking_uri=http://127.0.0.1:{listening}"])
        assert len(instantiate_loggers(cfg.logger)) == 4
