"""The attribute-sweep grid: one row per image, input first, then one decode per alpha."""

import pytest
import torch

from vaelab.viz.attribute import attribute_sweep_figure, attribute_sweep_grid


def test_grid_rows_hold_input_then_each_alpha():
    inputs = torch.rand(3, 3, 8, 6)
    decoded = torch.stack([torch.full_like(inputs, v) for v in (0.0, 0.5)])
    grid = attribute_sweep_grid(inputs, decoded, padding=2)
    assert grid.shape == (3, 3 * (8 + 2) + 2, 3 * (6 + 2) + 2)

    def tile(row, col):
        return grid[:, 2 + row * 10: 10 + row * 10, 2 + col * 8: 8 + col * 8]

    assert torch.equal(tile(1, 0), inputs[1])
    assert torch.all(tile(2, 1) == 0.0) and torch.all(tile(0, 2) == 0.5)


def test_figure_labels_columns_and_rejects_mismatched_shapes():
    inputs = torch.rand(2, 1, 8, 8)
    assert attribute_sweep_grid(inputs, torch.rand(3, 2, 1, 8, 8)).shape[0] == 3  # grey -> RGB
    fig = attribute_sweep_figure(inputs, [(torch.rand(3, 2, 1, 8, 8), "vector")], [-1, 0, 2],
                                 "title")
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["input", "α=-1", "α=0", "α=2"]
    with pytest.raises(ValueError, match="must be"):
        attribute_sweep_grid(inputs, torch.rand(3, 2, 1, 8, 7))
