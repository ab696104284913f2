"""Commands run as a user runs them: a Python subprocess, its output read back."""

import os
import signal
import subprocess
import sys
from pathlib import Path


def run_command(cwd: Path, args: list[str], expect_ok: bool = True, timeout: float = 300,
                module: bool = True, wait: bool = True, split_stderr: bool = False):
    """`python -m <args[0]> <args[1:]>` (or `python <args>` with module=False) in cwd, its
    stdout a pipe (as under SLURM or nohup); returns the output (stdout and stderr; with
    split_stderr, the pair (stdout, stderr)), or the Popen with wait=False. expect_ok=False
    expects a non-zero exit."""
    cmd = [sys.executable, *(["-m"] if module else []), *args]
    # its own process group, so a hung run's DDP ranks can be killed with it
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE if split_stderr else subprocess.STDOUT,
                            text=True, start_new_session=True)
    if not wait:
        return proc
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    assert (proc.returncode == 0) == expect_ok, \
        f"{' '.join(cmd)} exited {proc.returncode}:\n{out[-3000:]}{(err or '')[-3000:]}"
    return (out, err) if split_stderr else out
