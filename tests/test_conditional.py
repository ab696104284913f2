"""A conditional VAE (model.condition=label) end to end on the bundled digits: it uses its
condition, samples one row per class, scores log p(x|y), and changes a class with z fixed."""

import pytest
import torch
from PIL import Image

from helpers.configs import FAST
from vaelab.attr import attribute_vector_figure, conditional_decodes, with_attribute
from vaelab.checkpoints import load_run, setup_run_data
from vaelab.configs import compose_config
from vaelab.eval import evaluate
from vaelab.models.iwae import importance_weighted_log_likelihood
from vaelab.train import train
from vaelab.visualize import visualize

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cvae(tmp_path_factory):
    """A label-conditional digits VAE trained for 15 epochs: (checkpoint, model, data)."""

    out = tmp_path_factory.mktemp("cvae") / "run"
    train(compose_config("train", [*FAST, "model.condition=label", "trainer.max_epochs=15",
                                   "logger=none", "test=false"], out))
    ckpt = out / "checkpoints" / "last.ckpt"
    _, model, data = load_run(ckpt)
    setup_run_data(data)
    model.setup_data(data)
    return ckpt, model, data


def test_the_model_uses_its_condition(cvae):
    _, model, data = cvae
    x = data.model_input(data.images("test")[:200])
    labels = data.labels("test")[:200]
    y = model.condition_of(labels)
    wrong = model.condition_of((labels + 3) % 10)
    true_ll = importance_weighted_log_likelihood(model, x, 20, y=y,
                                                 generator=torch.Generator().manual_seed(0))
    wrong_ll = importance_weighted_log_likelihood(model, x, 20, y=wrong,
                                                  generator=torch.Generator().manual_seed(0))
    # log p(x|y) with the image's own class is clearly higher than with another class
    assert true_ll.mean() > wrong_ll.mean() + 3.0, (true_ll.mean(), wrong_ll.mean())


def test_a_class_condition_with_z_fixed_draws_that_class(cvae):
    _, model, data = cvae
    images, labels = data.images("test"), data.labels("test")
    fours = data.model_input(images[labels == 4])
    nine = data.model_input(images[labels == 9]).mean(0)
    four = fours.mean(0)
    y = model.condition_of(labels[labels == 4])
    target = with_attribute(data.class_names, y, "9", None, exclusive=True)
    assert torch.equal(target, model.condition_of(torch.full((len(y),), 9)))
    before, after = conditional_decodes(model, fours, y, target, [0.0, 1.0])
    # decoded as a 9: nearer the mean 9 than the mean 4, and the other way round before
    assert (after - nine).pow(2).mean() < (after - four).pow(2).mean()
    assert (before - four).pow(2).mean() < (before - nine).pow(2).mean()


def test_eval_scores_log_p_x_given_y_and_viz_draws_a_row_per_class(cvae, make_cfg, tmp_path):
    ckpt, model, _ = cvae
    metrics = evaluate(make_cfg([f"ckpt_path={ckpt}", "iwae.num_samples=10", "logger=none",
                                 "fid.num_samples=100", "fid.kid_subsets=2",
                                 "fid.kid_subset_size=50",
                                 "fid.feature_extractor={_target_: torch.nn.Flatten}"],
                                name="eval", output_dir=tmp_path / "eval"))
    assert metrics["test/nll"] < -metrics["test/elbo"]
    assert {"test/fid", "test/fid_gmm"} <= set(metrics)
    paths = visualize(compose_config("viz", [f"ckpt_path={ckpt}",
                                             "figures.prior_samples.padding=0",
                                             "figures.min_width=0"], tmp_path / "viz"))
    for name in ("prior_samples", "samples_prior", "samples_gmm"):
        # 10 rows of 8 digits of 8x8 pixels: one row per class
        assert Image.open(paths[name]).size == (8 * 8, 10 * 8), name


def test_attr_on_a_cvae_shows_the_conditional_way_beside_the_vector(cvae, tmp_path):
    ckpt, _, _ = cvae
    paths = attribute_vector_figure(compose_config(
        "attr", [f"ckpt_path={ckpt}", "attribute=9", "source=4", "num_show=3"],
        tmp_path / "attr"))
    figure = Image.open(paths["figure"])
    assert figure.width > 2 * figure.height  # two panels side by side


def test_attribute_conditions_of_factor_data_are_every_factor_one_hot(tmp_path):
    """model.condition=attributes on the rendered sprites: the condition length comes from the
    data config (3 shapes + 3 scales + 2 orientations + 4 + 4 positions), the vectors are each
    factor's one-hot, a step trains, and setting shape:heart keeps each factor one-hot."""
    from hydra.utils import instantiate


    cfg = compose_config("train", [
        *FAST, "data=sprites", f"data.cache_dir={tmp_path / 'cache'}", "data.image_size=16",
        "data.scales=3", "data.orientations=2", "data.positions=4", "data.val_size=20",
        "data.test_size=20", "model.condition=attributes", "model.latent_dim=3",
        "model.encoder.hidden_dims=[32]", "model.decoder.hidden_dims=[32]"], tmp_path / "run")
    assert cfg.model.condition_dim == 3 + 3 + 2 + 4 + 4
    data, model = instantiate(cfg.data), instantiate(cfg.model)
    data.setup()
    model.setup_data(data, fitting=True)
    labels = data.labels("train")[:8]
    y = model.condition_of(labels)
    assert y.shape == (8, 16) and torch.equal(y.sum(1), torch.full((8,), 5.0))
    assert torch.equal(y[:, :3].argmax(1), labels[:, 0])  # the shape block
    loss = model.training_step((data.model_input(data.images("train")[:8]), labels), 0)
    assert torch.isfinite(loss)
    hearts = with_attribute(data.attribute_names, y, "shape:heart", None, exclusive=False)
    assert torch.equal(hearts[:, :3], torch.tensor([[0.0, 0.0, 1.0]]).expand(8, 3))
    assert torch.equal(hearts[:, 3:], y[:, 3:])
