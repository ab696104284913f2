"""Configs as the tests compose them: the overrides of a fast, quiet run, and the number of
training steps a composed config implies."""

import math

from omegaconf import DictConfig

from vaelab.builders import build

#: a run on the CPU without progress bar or model summary (make_cfg adds them to every config)
FAST = [
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "callbacks.progress=null",
    "callbacks.model_summary=null",
]


def train_images(cfg: DictConfig) -> int:
    """The number of images in the training split of the data `cfg` builds."""
    data = build(cfg.data)
    data.prepare_data()
    data.setup("fit")
    return len(data.images("train"))


def steps_per_epoch(cfg: DictConfig) -> int:
    """Optimiser steps in one epoch of `cfg`'s run: its training images over its global batch
    size, the last short batch included."""
    return math.ceil(train_images(cfg) / cfg.data.batch_size)
