"""A run on a busy machine says when torch's threads oversubscribe the cores, and how to fix it."""

import logging

import pytest

from vaelab.cpu import oversubscription


@pytest.mark.parametrize("threads, cores, load", [
    (1, 2, 2.0),   # one thread beside one busy core
    (2, 2, 1.0),   # this process's own load only
    (8, 8, 1.4),
    (1, 2, 5.0),   # busy, but one thread is as few as it gets
])
def test_no_line_when_the_threads_fit(threads, cores, load):
    assert oversubscription(threads, cores, load) is None


def test_a_busy_machine_gets_one_line_with_the_fix():
    assert oversubscription(2, 2, 3.1) == (
        "torch uses 2 threads on 2 CPU cores while other processes keep about 2.1 of them busy "
        "(load average 3.1): oversubscribed cores can make training several times slower. "
        "Start the run with OMP_NUM_THREADS=1")
    assert oversubscription(16, 16, 9.0).endswith("OMP_NUM_THREADS=8")


@pytest.mark.integration
def test_a_run_says_so_at_its_start(make_cfg, monkeypatch, caplog):
    import torch

    from vaelab import cpu
    from vaelab.train import train

    monkeypatch.setattr(cpu, "available_cores", lambda: 2)
    monkeypatch.setattr(cpu.os, "getloadavg", lambda: (4.0, 3.0, 2.0))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    with caplog.at_level(logging.INFO, logger="vaelab"):
        train(make_cfg(["trainer.max_epochs=1", "logger=none", "test=false",
                        "callbacks.latent_viz=null"]))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("torch uses 2 threads on 2 CPU cores") for m in warnings)
