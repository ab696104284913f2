"""The explorer's latent space (no web): dims by use, the scatter's projection, items, codes
checked, interpolation, attribute directions, prior samples and the hierarchical hook."""

import pytest
import torch
from torch.nn import functional as F

from helpers.explore import space_of, two_layer_model
from vaelab.explore.projection import ScatterProjection
from vaelab.explore.space import LatentSpace, RequestError, latent_layers
from vaelab.models.attribute_vectors import attribute_vector
from vaelab.models.distributions import gaussian_kl
from vaelab.models.latents import decode_means
from vaelab.viz.grids import interpolate
from vaelab.viz.plots import project_2d


@pytest.fixture(scope="module")
def space(tmp_path_factory) -> LatentSpace:
    return space_of([], tmp_path_factory.mktemp("space"), num_points=120)


def _inputs(space: LatentSpace, count: int) -> torch.Tensor:
    return space.data.model_input(space.images[:count])


def test_dims_are_ordered_by_mean_kl_and_the_unused_ones_marked(tmp_path):
    base = space_of([], tmp_path, num_points=120)
    with torch.no_grad():
        q = base.model.posterior(_inputs(base, 120))
    kl = gaussian_kl(q.mu, q.logvar).mean(0).double()  # by hand, not through the space
    middle = kl.sort().values[len(kl) // 2 - 1: len(kl) // 2 + 1]
    threshold = float(middle.mean())  # between two dims' values: no tie for rounding to break
    space = space_of([], tmp_path, num_points=120, unused_below=threshold)
    info = space.info()
    assert info["usage_kind"] == "kl"
    assert [d["index"] for d in info["dims"]] == kl.argsort(descending=True).tolist()
    assert [d["usage"] for d in info["dims"]] == pytest.approx(
        kl.sort(descending=True).values.tolist(), rel=1e-4)
    assert [d["unused"] for d in info["dims"]] == [bool(v < threshold) for v in
                                                   kl.sort(descending=True).values]
    assert any(d["unused"] for d in info["dims"]) and not all(d["unused"] for d in info["dims"])
    # N(0, I): each slider spans the prior's +-3 sigma, centred on its median 0, and holds
    # every scatter image's code
    assert all((d["low"], d["centre"], d["high"]) == pytest.approx((-3, 0, 3), abs=1e-4)
               for d in info["dims"])
    narrow = space_of([], tmp_path, num_points=120, range_sigmas=0.1)
    means = narrow.means
    assert [(d["low"], d["high"]) for d in narrow.info()["dims"]] == [
        pytest.approx((min(-0.1, float(means[:, d].min())), max(0.1, float(means[:, d].max()))),
                      abs=1e-5) for d in narrow.usage.argsort(descending=True).tolist()]
    assert (means.min(0).values < -0.1).any()  # some slider was widened


def test_without_a_kl_per_dim_the_dims_are_ordered_by_the_variance_of_the_means(tmp_path):
    space = space_of(["model/prior=mixture_of_gaussians"], tmp_path, num_points=120)
    with torch.no_grad():
        means = space.model.posterior(_inputs(space, 120)).mean.double()
    info = space.info()
    assert info["usage_kind"] == "variance"
    assert [d["index"] for d in info["dims"]] == means.var(0).argsort(descending=True).tolist()
    # no closed-form quantiles: the sliders span the aggregate posterior's
    assert all(d["low"] < d["centre"] < d["high"] for d in info["dims"])


def test_the_scatter_is_the_latent_scatter_figures_projection(space):
    xy, axes = project_2d(space.means, "pca", 0)
    scatter = space.info()["scatter"]
    assert scatter["x"] == pytest.approx(xy[:, 0].tolist())
    assert scatter["y"] == pytest.approx(xy[:, 1].tolist())
    assert scatter["axes"] == list(axes) and scatter["axes"][0].startswith("PC 1")
    assert scatter["classes"] == space.data.labels("val")[:120].tolist()


def test_a_new_code_lands_where_the_projection_puts_it():
    codes = torch.randn(80, 6, generator=torch.Generator().manual_seed(0))
    pca = ScatterProjection(codes, "pca")
    assert pca.place(codes[:5]) == pytest.approx(pca.xy[:5], abs=1e-9)  # PCA is affine
    plane = ScatterProjection(codes[:, :2])
    assert plane.place(torch.tensor([[0.3, -1.2]]))[0] == pytest.approx([0.3, -1.2])
    tsne = ScatterProjection(codes, "tsne")
    # no map for new points: a code lands among its nearest neighbours' places
    placed = tsne.place(codes[:1] + 1e-4)[0]
    nearest = ((codes - codes[0]) ** 2).sum(1).argsort()[:5]
    assert placed == pytest.approx(tsne.xy[nearest.numpy()].mean(0))


def test_an_item_is_its_image_posterior_mean_and_reconstruction(space):
    x = _inputs(space, 4)
    item = space.item(3)
    assert torch.equal(item["image"], x[3])
    assert item["z"] == pytest.approx(space.model.posterior(x).mean[3].tolist(), abs=1e-6)
    assert torch.allclose(item["reconstruction"], space.model.reconstruct(x)[3], atol=1e-6)
    assert item["y"] is None and item["class"] == int(space.data.labels("val")[3])
    with pytest.raises(RequestError, match=r"index=120: the scatter has images 0\.\.119"):
        space.item(120)


def test_codes_and_conditions_are_checked(space, tmp_path):
    d = space.model.latent_dim
    assert space.decode([0.0] * d, None).shape == (1, 8, 8)
    with pytest.raises(RequestError, match=f"z has 3 numbers; this model's codes have {d}"):
        space.decode([0.0] * 3, None)
    with pytest.raises(RequestError, match="not conditional: send y=null"):
        space.decode([0.0] * d, [1.0])
    with pytest.raises(RequestError, match="latent dimension 99 does not exist"):
        space.points(0, 99)
    conditional = space_of(["model.condition=label"], tmp_path, num_points=20)
    with pytest.raises(RequestError, match="conditional .*send y, 10 numbers"):
        conditional.decode([0.0] * d, None)
    # a class changes the decode; an item comes with its own one-hot class
    zero, one = (conditional.decode([0.0] * d, F.one_hot(torch.tensor(c), 10).tolist())
                 for c in (0, 1))
    assert not torch.equal(zero, one)
    item = conditional.item(2)
    assert item["y"] == F.one_hot(conditional.data.labels("val")[2], 10).float().tolist()
    assert conditional.info()["condition"] == {"kind": "label",
                                               "names": [str(c) for c in range(10)]}


def test_an_interpolation_runs_from_one_code_to_the_other(space):
    za, zb = space.means[0].tolist(), space.means[1].tolist()
    for method in ("linear", "spherical"):
        frames, codes = space.interpolation({"z": za}, {"z": zb}, 7, method)
        assert frames.shape == (7, 1, 8, 8)
        expected = interpolate(torch.tensor([za]), torch.tensor([zb]), 7, method)[0]
        assert torch.allclose(codes, expected)
        assert torch.allclose(frames, decode_means(space.model, expected), atol=1e-6)
        assert torch.allclose(frames[0], space.decode(za, None), atol=1e-6)
        assert torch.allclose(frames[-1], space.decode(zb, None), atol=1e-6)
    with pytest.raises(RequestError, match="interpolation method must be one of"):
        space.interpolation({"z": za}, {"z": zb}, 7, "cubic")


def test_a_direction_is_the_attribute_vector_of_vaelab_attr(space):
    vector, counts = space.direction("9", "4")
    expected, expected_counts = attribute_vector(
        space.model, space.data, "train", "9", "4", 1000, 64,
        torch.Generator().manual_seed(0))
    assert torch.allclose(vector, expected) and counts == expected_counts
    assert space.direction("9", "4")[0] is vector  # computed once
    with pytest.raises(RequestError, match="'cat' is not an attribute of this data"):
        space.direction("cat", None)


def test_prior_samples_have_the_temperatures_spread(space):
    codes = torch.stack([space.sample(0.5) for _ in range(400)])
    assert codes.shape == (400, space.model.latent_dim)
    assert codes.std().item() == pytest.approx(0.5, rel=0.1)
    assert not torch.equal(codes[0], codes[1])
    with pytest.raises(RequestError, match=r"layer=1: this model has latent layers 0\.\.0"):
        space.sample(1.0, layer=1, z=[0.0] * space.model.latent_dim)


def test_a_hierarchical_model_resamples_from_a_layer_down(tmp_path):
    space = space_of([], tmp_path, num_points=30)
    model = two_layer_model()
    hierarchical = LatentSpace(model, space.data, num_points=30)
    assert hierarchical.info()["layers"] == [2, 2]
    z = [5.0, -5.0, 5.0, -5.0]
    below = hierarchical.sample(1.0, layer=1, z=z)
    assert below[:2].tolist() == [5.0, -5.0] and below[2:].abs().max() < 5  # top layer kept
    assert hierarchical.sample(1.0, layer=0)[:2].abs().max() < 5  # all layers anew
    with pytest.raises(RequestError, match="needs the current code z"):
        hierarchical.sample(1.0, layer=1)
    model.latent_layers = [3, 2]
    with pytest.raises(ValueError, match=r"must add up to model.latent_dim=4"):
        latent_layers(model)
