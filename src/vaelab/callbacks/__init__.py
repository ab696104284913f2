"""Lightning callbacks that vaelab's configs name."""

from vaelab.callbacks.latent_viz import LatentViz
from vaelab.callbacks.rng_state import RNGStateCheckpoint
from vaelab.callbacks.sigterm_checkpoint import CheckpointOnSigterm

__all__ = ["CheckpointOnSigterm", "LatentViz", "RNGStateCheckpoint"]
