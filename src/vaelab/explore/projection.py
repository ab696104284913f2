"""The latent_scatter figure's 2-D view of posterior means (viz.plots.project_2d), and where a
code that was not among them (an uploaded image's) lands in it."""

import numpy as np
import torch

from vaelab.viz.plots import project_2d

#: neighbours whose places average to a new code's place in a non-linear (t-SNE) view
NEIGHBOURS = 5


class ScatterProjection:
    """`xy` [N, 2] and `axes` (two labels) of codes [N, D] as project_2d draws them."""

    def __init__(self, codes: torch.Tensor, method: str = "pca", seed: int = 0):
        self.xy, self.axes = project_2d(codes, method, seed)
        self.codes = codes.detach().cpu().double().numpy()
        # The identity (2-D codes) and PCA are affine maps of the codes, so the least-squares
        # affine fit to (codes, xy) is that map exactly, also for codes it has not seen.
        self.affine = None
        if codes.shape[1] == 2 or method == "pca":
            ones = np.ones((len(self.codes), 1))
            self.affine = np.linalg.lstsq(np.hstack([self.codes, ones]), self.xy, rcond=None)[0]

    def place(self, codes: torch.Tensor) -> np.ndarray:
        """Where codes [M, D] land in the view, [M, 2]: through the affine map where there is
        one, else at the mean place of their nearest codes (t-SNE has no map for new points)."""
        new = codes.detach().cpu().double().numpy()
        if self.affine is not None:
            return np.hstack([new, np.ones((len(new), 1))]) @ self.affine
        distances = ((new[:, None, :] - self.codes[None, :, :]) ** 2).sum(-1)
        nearest = np.argsort(distances, axis=1)[:, :NEIGHBOURS]
        return self.xy[nearest].mean(axis=1)
