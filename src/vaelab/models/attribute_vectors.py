"""Latent attribute vectors ("add eyeglasses"): the mean posterior mean of images with an
attribute minus that of images without it (or with another one), on any data whose DataModule
names binary attributes (`attributes(split)`: CelebA's, classes one-hot, factor values)."""

from collections.abc import Sequence

import torch

from vaelab.models.latents import posterior_means


def find_column(names: Sequence[str], name: str | int) -> int:
    """Index of attribute `name` (exact, else the one case-insensitive match)."""
    name = str(name)
    matches = [i for i, n in enumerate(names) if n == name] or [
        i for i, n in enumerate(names) if n.lower() == name.lower()]
    if len(matches) != 1:
        raise ValueError(f"{name!r} is not an attribute of this data; choose one of {list(names)}")
    return matches[0]


def group_masks(names: Sequence[str], table: torch.Tensor, attribute: str | int,
                source: str | int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(with, without) bool [N]: `attribute` vs not, or vs `source` (each without the other)."""
    column = find_column(names, attribute)
    target = table[:, column]
    if source is None:
        return target, ~target
    if find_column(names, source) == column:
        raise ValueError(f"source={source} and attribute={attribute} are the same: give another "
                         "source, or source=null for images without the attribute")
    other = table[:, find_column(names, source)]
    return target & ~other, other & ~target


def pick(mask: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """At most n random indices where mask is true, in increasing order."""
    where = mask.nonzero().squeeze(1)
    chosen = where[torch.randperm(len(where), generator=generator)[:n]]
    return chosen.sort().values


def attribute_vector(model, datamodule, split: str, attribute: str | int,
                     source: str | int | None, num_images: int, batch_size: int,
                     generator: torch.Generator) -> tuple[torch.Tensor, dict]:
    """Mean E[z|x] of up to num_images images with minus without; -> ([latent_dim], counts)."""
    images = datamodule.images(split)
    with_mask, without_mask = group_masks(*datamodule.attributes(split), attribute, source)
    groups = {"with": pick(with_mask, num_images, generator),
              "without": pick(without_mask, num_images, generator)}
    empty = [k for k, idx in groups.items() if len(idx) == 0]
    if empty:
        raise ValueError(f"the {split} split has no images {' or '.join(empty)} "
                         f"attribute={attribute} (source={source}): pick another attribute")
    labels = datamodule.labels(split)
    means = {k: posterior_means(model, images[idx.to(images.device)], batch_size,
                                datamodule.model_input,
                                model.condition_of(labels[idx.to(labels.device)])).mean(0)
             for k, idx in groups.items()}
    counts = {f"num_{k}": len(idx) for k, idx in groups.items()}
    return means["with"] - means["without"], counts
