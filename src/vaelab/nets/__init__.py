from vaelab.nets.conv import ConvDecoder, ConvEncoder
from vaelab.nets.ladders import MLPLadder
from vaelab.nets.mlp import MLPDecoder, MLPEncoder
from vaelab.nets.residual_ladder import ResidualLadder

__all__ = ["ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder", "MLPLadder",
           "ResidualLadder"]
