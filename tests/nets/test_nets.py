"""Every encoder/decoder pair works for any image shape the data brings."""

import pytest
import torch

from vaelab.models import VAE, BernoulliLikelihood
from vaelab.nets import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder

SHAPES = [(1, 28, 28), (3, 64, 64), (1, 8, 8)]
PAIRS = {
    "mlp": lambda s, d: (MLPEncoder(s, d, [32, 16]), MLPDecoder(s, d, [16, 32])),
    "conv": lambda s, d: (ConvEncoder(s, d, [8, 16]), ConvDecoder(s, d, [16, 8])),
    "conv_bn_k3": lambda s, d: (
        ConvEncoder(s, d, [8, 16], kernel_size=3, batch_norm=True, activation="silu"),
        ConvDecoder(s, d, [16, 8], kernel_size=3, batch_norm=True, activation="silu"),
    ),
}


@pytest.mark.parametrize("shape", SHAPES + [(3, 30, 30), (1, 7, 9)])
@pytest.mark.parametrize("pair", PAIRS)
def test_nets_round_trip_shapes(shape, pair):
    encoder, decoder = PAIRS[pair](shape, 5)
    x = torch.rand(4, *shape)
    mu, logvar = encoder(x)
    assert mu.shape == (4, 5) and logvar.shape == (4, 5)
    assert decoder(mu).shape == x.shape


@pytest.mark.parametrize("shape", SHAPES + [(1, 7, 9)])
@pytest.mark.parametrize("decoder", [
    lambda s, d, n: MLPDecoder(s, d, [16], out_channels=n),
    lambda s, d, n: ConvDecoder(s, d, [16, 8], out_channels=n),
], ids=["mlp", "conv"])
def test_decoders_output_the_channels_the_likelihood_asks_for(shape, decoder):
    params = decoder(shape, 5, 30)(torch.randn(4, 5))
    assert params.shape == (4, 30, *shape[1:])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("pair", PAIRS)
def test_vae_takes_optimiser_steps_for_every_shape(shape, pair):
    torch.manual_seed(0)
    encoder, decoder = PAIRS[pair](shape, 4)
    vae = VAE(encoder, decoder, BernoulliLikelihood(), 4, optimizer=torch.optim.Adam)
    optimizer = vae.configure_optimizers()
    x = torch.bernoulli(torch.full((8, *shape), 0.2))
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = vae.training_step((x, torch.zeros(8)), 0)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_too_small_image_for_the_conv_stack_is_a_clear_error():
    with pytest.raises(ValueError, match="too small for 4 strided conv layers"):
        ConvEncoder((1, 8, 8), 2, channels=[8, 8, 8, 8])


def test_unknown_activation_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown activation 'swishy'.*relu"):
        MLPEncoder((1, 8, 8), 2, [8], activation="swishy")
