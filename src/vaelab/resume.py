"""Where a run continues from (ckpt_path=..., resume=auto) and keeping earlier results safe."""

from pathlib import Path

from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

RESUME_MODES = (None, "auto")
#: Files a run writes once per attempt; an attempt resumed in place keeps the earlier copies.
RUN_FILES = ("config_resolved.yaml", "metrics.json")


def checkpoint_dir(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def find_last_checkpoint(output_dir: Path) -> Path | None:
    """The newest last*.ckpt of a run directory, or None."""
    candidates = sorted(checkpoint_dir(output_dir).glob("last*.ckpt"),
                        key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else None


def resolve_ckpt_path(output_dir: Path, ckpt_path: str | None, resume: str | None) -> str | None:
    """The checkpoint this run continues from: ckpt_path, or with resume=auto the newest
    last.ckpt of output_dir (None starts afresh)."""
    if resume not in RESUME_MODES:
        raise ValueError(f"resume must be null or auto, got {resume!r}")
    if resume == "auto":
        if ckpt_path:
            raise ValueError("give either ckpt_path=<checkpoint> or resume=auto, not both")
        last = find_last_checkpoint(output_dir)
        if last is None:
            rank_zero_info(f"resume=auto: no last.ckpt in {checkpoint_dir(output_dir)}, "
                           "starting a new run there")
            return None
        rank_zero_info(f"resume=auto: continuing from {last}")
        return str(last)
    if ckpt_path and not Path(ckpt_path).expanduser().is_file():
        raise FileNotFoundError(
            f"ckpt_path={ckpt_path} does not exist: pass a .ckpt that vaelab-train wrote, e.g. "
            "<run dir>/checkpoints/last.ckpt, or use hydra.run.dir=<run dir> resume=auto"
        )
    return ckpt_path


def check_output_dir(output_dir: Path, ckpt_path: str | None) -> bool:
    """Refuse a run directory holding another run's checkpoints; True if this run continues the
    run already in output_dir (its checkpoints will be updated in place)."""
    ckpt_dir = checkpoint_dir(output_dir)
    if not (ckpt_dir.is_dir() and any(ckpt_dir.iterdir())):
        return False
    if ckpt_path and Path(ckpt_path).expanduser().resolve().parent == ckpt_dir.resolve():
        return True
    raise FileExistsError(
        f"{ckpt_dir} already holds checkpoints of an earlier run: choose a new hydra.run.dir, "
        f"or continue that run with hydra.run.dir={output_dir} resume=auto"
    )


@rank_zero_only
def keep_earlier_results(output_dir: Path) -> None:
    """Rename the earlier attempts' run files (metrics.json -> metrics.attempt1.json, ...) so
    that continuing a run in its own directory never overwrites them."""
    for name in RUN_FILES:
        path = Path(output_dir) / name
        if not path.exists():
            continue
        attempt = 1
        while (kept := path.with_name(f"{path.stem}.attempt{attempt}{path.suffix}")).exists():
            attempt += 1
        path.rename(kept)
