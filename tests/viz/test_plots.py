"""The matplotlib charts: class colours and legend of the scatter, KL bars, figure sizes."""

import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex

from vaelab.models import gaussian_kl
from vaelab.viz import annotated_grid, figure_to_image, kl_per_dim_chart, latent_scatter


@pytest.mark.parametrize("latent_dim, method", [(2, "pca"), (5, "pca"), (5, "tsne")])
def test_latent_scatter_has_one_colour_and_legend_entry_per_class(latent_dim, method):
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 2, 5, 7]).repeat(10)
    mu = torch.randn(40, latent_dim, generator=g) + labels[:, None]
    fig = latent_scatter(mu, labels, method=method, figsize=(4, 3), dpi=50)
    ax = fig.axes[0]
    colours = {to_hex(c.get_facecolor()[0]) for c in ax.collections}
    assert len(ax.collections) == 4 and len(colours) == 4
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "2", "5", "7"]
    assert sum(len(c.get_offsets()) for c in ax.collections) == 40
    if latent_dim == 2:  # plotted directly, no projection
        np.testing.assert_allclose(ax.collections[1].get_offsets(), mu[labels == 2].numpy())
    assert figure_to_image(fig).shape == (3, 150, 200)


def test_latent_scatter_needs_two_dims_and_a_known_projection():
    with pytest.raises(ValueError, match="latent_dim >= 2"):
        latent_scatter(torch.randn(10, 1))
    with pytest.raises(ValueError, match="pca"):
        latent_scatter(torch.randn(10, 3), method="umap")


def test_kl_chart_shows_the_mean_kl_of_each_dim_and_greys_collapsed_ones():
    mu = torch.tensor([[1.0, 0.0, 0.02], [-1.0, 0.0, 0.0]])
    logvar = torch.zeros(2, 3)
    fig = kl_per_dim_chart(gaussian_kl(mu, logvar), mu, collapsed_below=0.01, figsize=(3, 2),
                           dpi=50)
    bars = fig.axes[0].patches
    heights = [b.get_height() for b in bars]
    np.testing.assert_allclose(heights, gaussian_kl(mu, logvar).mean(0).numpy())
    assert [to_hex(b.get_facecolor()) for b in bars] == [to_hex("tab:blue"),
                                                          to_hex("tab:gray"), to_hex("tab:gray")]
    assert "1/3 active" in fig.axes[0].get_title()
    assert figure_to_image(fig).shape == (3, 100, 150)


def test_without_a_kl_per_dim_the_chart_shows_the_variance_of_the_means_and_says_so():
    means = torch.tensor([[1.0, 0.0], [-1.0, 0.001]])
    fig = kl_per_dim_chart(None, means, collapsed_below=0.01, figsize=(3, 2), dpi=50)
    heights = [b.get_height() for b in fig.axes[0].patches]
    np.testing.assert_allclose(heights, means.var(0).numpy(), rtol=1e-6)
    assert "no KL per dimension" in fig.axes[0].get_title()
    assert fig.axes[0].get_ylabel() == "Var_x E[z|x]"


def test_annotated_grid_labels_every_row_and_some_columns():
    image = torch.rand(3, 5 * 9 + 1, 12 * 9 + 1)
    fig = annotated_grid(image, nrow=5, ncol=12, padding=1,
                         col_labels=[f"c{i}" for i in range(12)],
                         row_labels=[f"z[{i}]" for i in range(5)], xlabel="x", ylabel="y",
                         min_width=200)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"z[{i}]" for i in range(5)]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["c0", "c2", "c4", "c6", "c8", "c10"]
    assert ax.get_xlabel() == "x" and figure_to_image(fig).shape[2] >= 200
