"""vaelab-explore ckpt_path=...: the latent space of a trained run, live in the browser. The run
is rebuilt from its checkpoint with the loader vaelab-viz uses (checkpoints.load_run), its
validation images encoded once, and a local web server started (conf/explore.yaml)."""

from pathlib import Path

from omegaconf import DictConfig

from vaelab.console import configure_console, log
from vaelab.validation import check_number

#: the names a browser on this machine reaches a loopback server by (Host headers)
LOOPBACK_NAMES = ["localhost", "127.0.0.1", "::1", "[::1]"]
#: what the explore extra installs
WEB_PACKAGES = {"fastapi", "starlette", "uvicorn", "pydantic"}


def check_options(cfg: DictConfig) -> None:
    check_number("port", cfg.port, low=0, integer=True)
    check_number("num_points", cfg.num_points, low=2, integer=True)
    check_number("range_sigmas", cfg.range_sigmas, low=0.1)
    check_number("directions.num_images", cfg.directions.num_images, low=1, integer=True)
    check_number("uploads.max_bytes", cfg.uploads.max_bytes, low=1, integer=True)
    check_number("uploads.max_pixels", cfg.uploads.max_pixels, low=1, integer=True)
    if cfg.port > 65535:
        raise ValueError(f"port={cfg.port}: give a port in 0..65535 (0: any free one)")


def build_space(cfg: DictConfig):
    """(LatentSpace of the checkpoint's model with its data encoded, a title naming the
    checkpoint). torch and Lightning are imported here, after the port is taken."""
    import torch

    from vaelab.checkpoints import load_run, setup_run_data
    from vaelab.explore.space import LatentSpace

    _, model, datamodule = load_run(cfg.ckpt_path, data_dir=cfg.get("data_dir"))
    model.to(torch.device(cfg.device))
    setup_run_data(datamodule)
    model.setup_data(datamodule)
    space = LatentSpace(model, datamodule, cfg.split, cfg.num_points, cfg.scatter_method,
                        cfg.seed, cfg.range_sigmas, cfg.unused_below, cfg.batch_size,
                        cfg.directions.split, cfg.directions.num_images)
    path = Path(cfg.ckpt_path)
    run = path.parent.parent.name if path.parent.name == "checkpoints" else ""
    return space, f"{run}/{path.name}" if run else path.name


def explore(cfg: DictConfig) -> None:
    """Serve the explorer until Ctrl+C."""
    configure_console()
    try:
        import fastapi  # noqa: F401  (the app needs it; said here, before anything is loaded)

        from vaelab.explore.server import is_loopback, listen, serve, url_of
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] not in WEB_PACKAGES:
            raise
        raise ModuleNotFoundError(f"vaelab-explore needs {err.name}, which is not installed: "
                                  'pip install "vaelab[explore]"') from None
    check_options(cfg)
    sock = listen(cfg.host, cfg.port)  # before the slow part: a taken port fails at once
    try:
        if not is_loopback(cfg.host):
            log.warning(f"host={cfg.host}: the explorer is open to every machine that reaches "
                        "this one on that address, and has no login; use host=127.0.0.1 "
                        "unless that is what you want")
        log.info(f"loading {cfg.ckpt_path} and encoding {cfg.num_points} {cfg.split} images")
        from vaelab.explore.app import create_app

        space, title = build_space(cfg)
        app = create_app(space, title, cfg.uploads.max_bytes, cfg.uploads.max_pixels,
                         [*LOOPBACK_NAMES, cfg.host] if is_loopback(cfg.host) else None)
        log.info(f"vaelab-explore: open {url_of(sock)} in a browser (Ctrl+C stops it)")
        serve(app, sock)
        log.info("vaelab-explore stopped")
    finally:
        sock.close()
