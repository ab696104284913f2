"""vaelab-explore as a command: it loads a checkpoint with the safe loader, prints its URL and
serves until Ctrl+C; a taken port, an unsafe checkpoint and an open host are said in one line."""

import logging
import re
import signal
import socket
import threading

import httpx2
import pytest

from helpers.commands import run_command
from helpers.explore import digits_checkpoint
from vaelab.configs import compose_config
from vaelab.explore.server import is_loopback

pytestmark = pytest.mark.integration


def read_until(proc, pattern: str, timeout: float = 120) -> tuple[re.Match | None, str]:
    """Read the process's output lines until one matches `pattern` (or it ends, or timeout)."""
    lines, found = [], []

    def reader():
        for line in proc.stdout:
            lines.append(line)
            match = re.search(pattern, line)
            if match:
                found.append(match)
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout)
    return (found[0] if found else None), "".join(lines)


def test_the_command_serves_a_checkpoint_at_the_url_it_prints(tmp_path):
    args = [f"ckpt_path={digits_checkpoint()}", "port=0", "num_points=50"]
    code = (f"import sys; sys.argv = ['vaelab-explore', *{args!r}]; "
            "from vaelab.cli import explore; explore()")  # the console script vaelab-explore
    proc = run_command(tmp_path, ["-c", code], module=False, wait=False)
    try:
        match, out = read_until(proc, r"open (http://127\.0\.0\.1:\d+/) in a browser")
        assert match, out
        url = match.group(1)
        info = httpx2.get(url + "api/info", timeout=30).json()
        assert info["latent_dim"] == 8 and info["num_points"] == 50
        assert info["title"] == "run/last.ckpt"
        page = httpx2.get(url, timeout=30)
        assert page.status_code == 200 and "vaelab-explore" in page.text
        # a page elsewhere whose name resolves to 127.0.0.1 (DNS rebinding) gets nothing
        rebound = httpx2.get(url + "api/info", headers={"Host": "rebind.example:80"}, timeout=30)
        assert rebound.status_code == 400
        proc.send_signal(signal.SIGINT)  # Ctrl+C
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_taken_port_fails_before_loading_anything(tmp_path, monkeypatch):
    from vaelab.explore import command

    monkeypatch.setattr(command, "build_space", lambda cfg: pytest.fail("loaded the run"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = compose_config("explore", ["ckpt_path=any.ckpt", f"port={port}"], tmp_path)
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port} .*: choose "
                                          "another port=, or port=0 for any free one"):
            command.explore(cfg)


def test_a_crafted_checkpoint_is_refused_by_the_safe_loader(tmp_path):
    import torch

    from vaelab.checkpoints import CheckpointError
    from vaelab.explore import command

    marker = tmp_path / "code_ran"

    class RunsCode:
        def __reduce__(self):
            return (marker.touch, ())

    crafted = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "run_config": {}, "payload": RunsCode()}, crafted)
    cfg = compose_config("explore", [f"ckpt_path={crafted}", "port=0"], tmp_path)
    with pytest.raises(CheckpointError, match="refusing to load it"):
        command.explore(cfg)
    assert not marker.exists()


def test_another_host_than_loopback_is_served_with_a_warning(tmp_path, monkeypatch, caplog):
    from vaelab.explore import command, server

    served = []
    monkeypatch.setattr(server, "serve", lambda app, sock: served.append(sock.getsockname()))
    cfg = compose_config("explore", [f"ckpt_path={digits_checkpoint()}", "host=0.0.0.0",
                                     "port=0", "num_points=20"], tmp_path / "explore")
    with caplog.at_level(logging.INFO, logger="vaelab"):
        command.explore(cfg)
    assert served and served[0][0] == "0.0.0.0"
    assert "host=0.0.0.0: the explorer is open to every machine" in caplog.text
    assert re.search(r"open http://0\.0\.0\.0:\d+/ in a browser", caplog.text)


def test_loopback_addresses():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.4", "example.org"))


@pytest.mark.parametrize("override, message", [
    ("port=70000", "port=70000: give a port in 0..65535"),
    ("num_points=1", "num_points=1: give a whole number >= 2"),
    ("uploads.max_bytes=-1", "uploads.max_bytes=-1: give a whole number >= 1"),
])
def test_bad_options_are_one_line(tmp_path, override, message):
    from vaelab.explore.command import check_options

    cfg = compose_config("explore", ["ckpt_path=x.ckpt", override], tmp_path)
    with pytest.raises(ValueError, match=re.escape(message)):
        check_options(cfg)
