"""vaelab-attr ckpt_path=... attribute=Eyeglasses: a latent attribute vector and its figure.

The vector is mean(E[z|x] over images with the attribute) - mean(E[z|x] over images without it
(or with `source`)); the figure adds alpha * vector to the posterior means of chosen images.
On a conditional VAE the figure also shows the conditional way beside it: the code held fixed
and the condition moved from the image's own y towards y with the attribute set.
"""

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig

from vaelab import interrupts
from vaelab.atomic import atomic_path
from vaelab.checkpoints import command_attempt, load_command_run
from vaelab.console import configure_console, log
from vaelab.models.attribute_vectors import attribute_vector, find_column, group_masks, pick
from vaelab.models.latents import decode_means
from vaelab.models.vae import condition_names
from vaelab.viz.attribute import attribute_sweep_figure
from vaelab.viz.images import save_figure


@torch.no_grad()
def shifted_decodes(model, x: torch.Tensor, vector: torch.Tensor, alphas: Sequence[float],
                    y: torch.Tensor | None = None) -> torch.Tensor:
    """Mean images decoded from E[z|x] + alpha * vector (with conditions y [N, C] if
    conditional); x [N, C, H, W] -> [A, N, C, H, W]."""
    codes = model.posterior(x, y).mean
    return torch.stack([decode_means(model, codes + a * vector, y=y) for a in alphas])


@torch.no_grad()
def conditional_decodes(model, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor,
                        alphas: Sequence[float]) -> torch.Tensor:
    """A conditional VAE's way: E[z|x, y] held fixed, decoded with y + alpha * (target - y);
    x [N, C, H, W], y and target [N, C'] -> [A, N, C, H, W]."""
    codes = model.posterior(x, y).mean
    return torch.stack([decode_means(model, codes, y=y + a * (target - y)) for a in alphas])


def with_attribute(names: Sequence[str], y: torch.Tensor, attribute: str | int,
                   source: str | int | None, exclusive: bool) -> torch.Tensor:
    """Conditions y [N, C] with `attribute` set (and `source` cleared). One-hot groups stay
    one-hot: a class (exclusive), or one factor's values ("<factor>:<value>" names)."""
    column = find_column(names, attribute)
    target = y.clone()
    name = str(names[column])
    if exclusive or ":" in name:
        group = [i for i, n in enumerate(names) if exclusive or
                 str(n).split(":")[0] == name.split(":")[0]]
        target[:, group] = 0
    elif source is not None:
        target[:, find_column(names, source)] = 0
    target[:, column] = 1
    return target


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def images_to_show(datamodule, split: str, attribute: str | int, source: str | int | None,
                   num_show: int, indices: Sequence[int] | None,
                   generator: torch.Generator) -> torch.Tensor:
    """Indices into `split`: the given ones, else num_show random images of the source group."""
    images = datamodule.images(split)
    if indices is not None:
        chosen = torch.tensor(list(indices), dtype=torch.long)
        if len(chosen) == 0 or chosen.min() < 0 or chosen.max() >= len(images):
            raise ValueError(f"indices={list(indices)} must index the {split} split "
                             f"(0..{len(images) - 1})")
        return chosen
    _, without = group_masks(*datamodule.attributes(split), attribute, source)
    chosen = pick(without, num_show, generator)
    if len(chosen) == 0:
        raise ValueError(f"the {split} split has no image to show without "
                         f"attribute={attribute}: pass indices=[...]")
    return chosen


def attribute_vector_figure(cfg: DictConfig) -> dict[str, Path]:
    """Compute, save (.pt) and draw (.png) the attribute vector, as an attempt like training's
    (run_dir.Attempt); returns both paths."""
    configure_console()
    with interrupts.handled():
        _, model, datamodule = load_command_run(cfg, "attr")
        model.to(_device(cfg.device))
        with command_attempt(cfg, datamodule) as attempt:
            attempt.start()
            with interrupts.during("computing the attribute vector"):
                paths = write_attribute_vector(cfg, model, datamodule, attempt.run.path)
            attempt.finish({"ckpt_path": str(cfg.ckpt_path),
                            **{name: str(path) for name, path in paths.items()}})
    return paths


def write_attribute_vector(cfg: DictConfig, model, datamodule, output_dir: Path
                           ) -> dict[str, Path]:
    """The vector (attr_<tag>.pt) and its figure (attr_<tag>.png) in output_dir."""
    tag = f"{cfg.source}_to_{cfg.attribute}" if cfg.source is not None else f"{cfg.attribute}"
    tag = re.sub(r"[^A-Za-z0-9._-]", "-", tag)  # shape:heart -> shape-heart, a portable name
    paths = {"vector": output_dir / f"attr_{tag}.pt", "figure": output_dir / f"attr_{tag}.png"}
    model.setup_data(datamodule)
    generator = torch.Generator().manual_seed(cfg.seed)
    vector, counts = attribute_vector(model, datamodule, cfg.split, cfg.attribute, cfg.source,
                                      cfg.num_images, cfg.batch_size, generator)
    log.info(f"attribute vector {tag}: |v|={vector.norm():.3f} from {counts['num_with']} images "
             f"with and {counts['num_without']} without, {cfg.split} split")
    shown = images_to_show(datamodule, cfg.show_split, cfg.attribute, cfg.source, cfg.num_show,
                           cfg.indices, generator)
    images, labels = datamodule.images(cfg.show_split), datamodule.labels(cfg.show_split)
    x = datamodule.model_input(images[shown.to(images.device)].to(model.device))
    y = model.condition_of(labels[shown.to(labels.device)].to(model.device))
    start = f"not {cfg.attribute}" if cfg.source is None else str(cfg.source)
    panels = [(shifted_decodes(model, x, vector, cfg.alphas, y),
               f"latent vector: z + α · ({start} → {cfg.attribute})")]
    if y is not None:
        panels.append((conditional_decodes(
            model, x, y, with_attribute(condition_names(datamodule, model.condition), y,
                                        cfg.attribute, cfg.source,
                                        exclusive=model.condition == "label"),
            cfg.alphas), f"condition: y + α · (y with {cfg.attribute} − y), z fixed"))
    with atomic_path(paths["vector"]) as tmp:
        torch.save({"vector": vector.cpu(), "attribute": str(cfg.attribute),
                    "source": None if cfg.source is None else str(cfg.source), **counts,
                    "split": cfg.split, "ckpt_path": str(cfg.ckpt_path),
                    "shown": shown, "alphas": list(cfg.alphas)}, tmp)
    fig = attribute_sweep_figure(x, panels, list(cfg.alphas), f"{cfg.show_split} images")
    save_figure(fig, paths["figure"])
    log.info(f"wrote {paths['vector']} and {paths['figure']}")
    return paths


if __name__ == "__main__":  # the command is vaelab.cli's (which imports this module)
    raise SystemExit("run vaelab-attr ..., or python -m vaelab attr ...")
