"""python -m vaelab.explore ckpt_path=...: the same as vaelab-explore."""

from vaelab.cli import explore

explore()
