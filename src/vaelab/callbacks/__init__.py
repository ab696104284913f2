"""Lightning callbacks that vaelab's configs name."""

from vaelab.callbacks.latent_viz import LatentViz
from vaelab.callbacks.progress import EpochSummary, PlainProgress, RichProgress, progress_bar
from vaelab.callbacks.update_skipping import SkipLargeUpdates
from vaelab.callbacks.weight_averaging import EMA

__all__ = ["EMA", "EpochSummary", "LatentViz", "PlainProgress", "RichProgress",
           "SkipLargeUpdates", "progress_bar"]
