"""Every encoder/decoder pair works for any image shape the data brings."""

import pytest
import torch

from vaelab.models import VAE, BernoulliLikelihood
from vaelab.nets import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder

SHAPES = [(1, 28, 28), (3, 64, 64), (1, 8, 8)]
# encoders output the diagonal Gaussian posterior's 2d features (mu, log sigma^2)
PAIRS = {
    "mlp": lambda s, d: (MLPEncoder(s, 2 * d, [32, 16]), MLPDecoder(s, d, [16, 32])),
    "mlp_gated": lambda s, d: (MLPEncoder(s, 2 * d, [32, 16], gated=True),
                               MLPDecoder(s, d, [16, 32], gated=True)),
    "conv": lambda s, d: (ConvEncoder(s, 2 * d, [8, 16]), ConvDecoder(s, d, [16, 8])),
    "conv_bn_k3": lambda s, d: (
        ConvEncoder(s, 2 * d, [8, 16], kernel_size=3, batch_norm=True, activation="silu"),
        ConvDecoder(s, d, [16, 8], kernel_size=3, batch_norm=True, activation="silu"),
    ),
}


@pytest.mark.parametrize("shape", SHAPES + [(3, 30, 30), (1, 7, 9)])
@pytest.mark.parametrize("pair", PAIRS)
def test_nets_round_trip_shapes(shape, pair):
    encoder, decoder = PAIRS[pair](shape, 5)
    x = torch.rand(4, *shape)
    features = encoder(x)
    assert features.shape == (4, 10)
    assert decoder(features[:, :5]).shape == x.shape


@pytest.mark.parametrize("pair", ["mlp", "conv"])
def test_conditional_nets_see_the_condition(pair):
    make = {"mlp": lambda: (MLPEncoder((1, 8, 8), 6, [16], condition_dim=4),
                            MLPDecoder((1, 8, 8), 3, [16], condition_dim=4)),
            "conv": lambda: (ConvEncoder((1, 8, 8), 6, [8], condition_dim=4),
                             ConvDecoder((1, 8, 8), 3, [8], condition_dim=4))}[pair]
    torch.manual_seed(0)
    encoder, decoder = make()
    x, z = torch.rand(2, 1, 8, 8), torch.randn(2, 3)
    y0, y1 = torch.eye(4)[[0, 0]], torch.eye(4)[[1, 1]]
    assert encoder(x, y0).shape == (2, 6) and decoder(z, y0).shape == (2, 1, 8, 8)
    assert not torch.allclose(encoder(x, y0), encoder(x, y1))
    assert not torch.allclose(decoder(z, y0), decoder(z, y1))


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
    vae.train()
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
