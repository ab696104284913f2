"""Lightning callbacks that vaelab's configs name."""

from vaelab.callbacks.latent_viz import LatentViz
from vaelab.callbacks.progress import EpochSummary, PlainProgress, RichProgress, progress_bar

__all__ = ["EpochSummary", "LatentViz", "PlainProgress", "RichProgress", "progress_bar"]
