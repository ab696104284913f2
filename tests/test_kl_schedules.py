"""The beta-VAE family's KL schedules: values against their formulas, gradients, and the VAE."""

from functools import partial
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from vaelab.configs import CONFIG_DIR, compose_config
from vaelab.models import VAE
from vaelab.models.kl_schedules import (
    BetaSchedule,
    CapacityAnnealing,
    ConstantBeta,
    CyclicalAnnealing,
    FreeBits,
    FreeBitsPerLayer,
    LinearWarmup,
)
from vaelab.models.likelihoods import BernoulliLikelihood
from vaelab.nets import MLPDecoder, MLPEncoder


def test_constant_beta_loss_is_recon_plus_beta_kl():
    schedule = ConstantBeta(beta=4.0)
    recon, kl = torch.tensor([10.0, 20.0]), torch.tensor([[1.0, 2.0], [0.5, 0.0]])
    assert torch.allclose(schedule.loss(recon, kl.sum(1), kl, step=123),
                          torch.tensor([22.0, 22.0]))
    assert schedule.logged(0) == {"beta": 4.0}


def test_weight_one_adds_the_kl_without_a_multiplication():
    recon = torch.tensor([10.0, 20.0], requires_grad=True)
    kl = torch.tensor([1.5, 0.25], requires_grad=True)
    loss = ConstantBeta(beta=1.0).loss(recon, kl, None, step=0)
    assert torch.equal(loss, recon + 1.0 * kl)
    inputs = [f.name() for f, _ in loss.grad_fn.next_functions]
    assert inputs == ["torch::autograd::AccumulateGrad"] * 2  # recon and kl themselves


@pytest.mark.parametrize("step, expected", [(0, 0.5), (250, 0.5 + 1.5 * 0.25), (1000, 2.0),
                                            (5000, 2.0)])
def test_linear_warmup_follows_its_formula(step, expected):
    schedule = LinearWarmup(beta=2.0, warmup_steps=1000, start_beta=0.5)
    assert schedule.weight(step) == pytest.approx(expected)
    assert schedule.logged(step) == {"beta": pytest.approx(expected)}


@pytest.mark.parametrize("step, expected", [
    (0, 0.0), (100, 4.0 * 100 / 200), (200, 4.0), (399, 4.0),  # first cycle: ramp, then hold
    (400, 0.0), (450, 4.0 * 50 / 200),                          # second cycle restarts at 0
    (800, 4.0), (1234, 4.0),                                    # n_cycles=2 done: hold beta
])
def test_cyclical_annealing_follows_its_formula(step, expected):
    schedule = CyclicalAnnealing(beta=4.0, cycle_steps=400, ratio=0.5, n_cycles=2)
    assert schedule.weight(step) == pytest.approx(expected)


def test_free_bits_floors_each_dimension_batch_mean():
    schedule = FreeBits(beta=2.0, floor_per_dim=0.5)
    # batch means per dimension: [1.0, 0.1] -> dimension 1 counts as the floor 0.5
    kl = torch.tensor([[1.5, 0.2], [0.5, 0.0]], requires_grad=True)
    recon = torch.tensor([3.0, 5.0])
    loss = schedule.loss(recon, kl.sum(1), kl, step=0)
    assert loss.mean().item() == pytest.approx(4.0 + 2.0 * (1.0 + 0.5))
    loss.mean().backward()
    # only the dimension above its floor is pushed towards the prior
    assert torch.allclose(kl.grad, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))


@pytest.mark.parametrize("step, capacity", [(0, 0.0), (500, 10.0), (1000, 20.0), (9999, 20.0)])
def test_capacity_rises_linearly_to_its_maximum(step, capacity):
    schedule = CapacityAnnealing(gamma=100.0, capacity_max=20.0, anneal_steps=1000)
    assert schedule.capacity(step) == pytest.approx(capacity)
    assert schedule.logged(step) == {"capacity": pytest.approx(capacity)}


@pytest.mark.parametrize("kl_value, sign", [(3.0, 1.0), (1.0, -1.0)])
def test_capacity_loss_value_and_gradient_sign(kl_value, sign):
    """gamma * |KL - C|: KL above the capacity is pushed down, below it is pushed up."""
    schedule = CapacityAnnealing(gamma=10.0, capacity_max=4.0, anneal_steps=100)  # C(50) = 2
    kl = torch.full((4,), kl_value, requires_grad=True)  # KL per image
    loss = schedule.loss(torch.zeros(4), kl, None, step=50).mean()
    assert loss.item() == pytest.approx(10.0 * abs(kl_value - 2.0))
    loss.backward()
    assert torch.allclose(kl.grad, torch.full_like(kl, sign * 10.0 / 4))


@pytest.mark.parametrize("make", [
    lambda: ConstantBeta(beta=-1.0),
    lambda: LinearWarmup(warmup_steps=-5),
    lambda: CyclicalAnnealing(ratio=0.0),
    lambda: FreeBits(floor_per_dim=float("nan")),
    lambda: FreeBitsPerLayer(floor_per_layer=-1.0),
    lambda: CapacityAnnealing(gamma=-1.0),
])
def test_bad_schedule_values_are_refused(make):
    with pytest.raises(ValueError, match="model"):
        make()


def _vae(**kwargs) -> VAE:
    return VAE(MLPEncoder((1, 4, 4), 4, (8,)), MLPDecoder((1, 4, 4), 2, (8,)),
               BernoulliLikelihood(), latent_dim=2, optimizer=torch.optim.Adam, **kwargs)


def test_vae_gives_its_beta_to_the_schedule_and_refuses_an_ignored_beta():
    assert _vae(beta=3.0).kl_weight() == 3.0  # no schedule: constant beta
    warmup = _vae(beta=2.0, kl_schedule=partial(LinearWarmup, warmup_steps=10)).kl_schedule
    assert (warmup.beta, warmup.weight(0), warmup.weight(10)) == (2.0, 0.0, 2.0)
    assert _vae(kl_schedule=CapacityAnnealing).kl_weight() is None
    with pytest.raises(ValueError, match="model.beta=4.0 has no effect with "
                       "model/kl_schedule=capacity: leave model.beta at 1"):
        _vae(beta=4.0, kl_schedule=CapacityAnnealing)
    # model.beta is the one KL-weight setting: a built schedule with its own beta is refused
    with pytest.raises(TypeError, match="without beta"):
        _vae(beta=1.0, kl_schedule=ConstantBeta(beta=2.0))


def test_free_bits_per_layer_floors_each_layers_batch_mean():
    schedule = FreeBitsPerLayer(beta=2.0, floor_per_layer=0.5)
    # batch means per layer: [1.0, 0.1] -> layer 2 counts as the floor 0.5
    kl_layers = torch.tensor([[1.5, 0.2], [0.5, 0.0]], requires_grad=True)
    recon = torch.tensor([3.0, 5.0])
    loss = schedule.loss(recon, kl_layers.sum(1), None, 0, kl_layers)
    assert loss.mean().item() == pytest.approx(4.0 + 2.0 * (1.0 + 0.5))
    loss.mean().backward()
    assert torch.allclose(kl_layers.grad, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    # a flat model is one layer: the whole KL is one group
    whole = schedule.loss(recon, torch.tensor([0.2, 0.2]), None, 0)
    assert whole.mean().item() == pytest.approx(4.0 + 2.0 * 0.5)


def test_a_hierarchy_floors_each_of_its_layers(tmp_path):
    from helpers.models import binary_images, tiny_hvae

    model = tiny_hvae(kl_schedule=partial(FreeBitsPerLayer, floor_per_layer=1e6))
    loss, values, out = model.batch_values(binary_images(4))
    # every layer under its floor: each contributes the constant floor
    assert loss.item() == pytest.approx(out["recon"].mean().item() + 3 * 1e6)


@pytest.mark.parametrize("name", ["constant", "linear_warmup", "cyclical", "free_bits",
                                  "free_bits_per_layer", "capacity"])
def test_every_schedule_config_builds_its_schedule(name, tmp_path):
    beta = "1" if name == "capacity" else "4"
    cfg = compose_config("train", [f"model/kl_schedule={name}", f"model.beta={beta}"], tmp_path)
    model = instantiate(cfg.model)
    schedule = model.kl_schedule
    assert schedule.beta == (None if name == "capacity" else 4.0)
    assert model.objective.name == "elbo" and model.objective.kl_schedule is schedule
    assert isinstance(schedule, BetaSchedule) == (name != "capacity")


def test_every_schedule_is_named_by_its_config_option():
    """Errors name model/kl_schedule=<option>, the file in conf/model/kl_schedule/."""
    for path in (Path(CONFIG_DIR) / "model" / "kl_schedule").glob("*.yaml"):
        target = OmegaConf.load(path)._target_
        assert get_class(target).name == path.stem, target


def test_a_recipes_schedule_option_left_under_another_schedule_is_named(tmp_path):
    """burda_2layer warms the KL up (model.kl_schedule.warmup_steps); choosing free bits per layer
    on top keeps that key, which free bits has no use for: one line saying how to drop it."""
    overrides = ["experiment=burda_2layer", "model/kl_schedule=free_bits_per_layer"]
    cfg = compose_config("train", overrides, tmp_path / "a")
    with pytest.raises(InstantiationException,
                       match=r"model\.kl_schedule\.warmup_steps is not an option of "
                       r"model/kl_schedule=free_bits_per_layer \(its options: floor_per_layer\)"
                       r".*~model\.kl_schedule\.warmup_steps"):
        instantiate(cfg.model)
    fixed = compose_config("train", [*overrides, "~model.kl_schedule.warmup_steps"], tmp_path / "b")
    assert isinstance(instantiate(fixed.model).kl_schedule, FreeBitsPerLayer)
