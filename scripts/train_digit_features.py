"""Train the DigitFeatures classifier (vaelab.metrics.digit_features) on MNIST and save its
weights: the feature network of FID/KID on digits where Inception's weights are not at hand.

    python scripts/train_digit_features.py --data-dir /path/to/data --out digit_features.pt
"""

import argparse

import torch
from torch.nn import functional as F
from torchvision.datasets import MNIST

from vaelab.metrics.digit_features import DigitFeatures


def as_rgb_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 28, 28] -> [N, 3, 28, 28], what FID's feature network receives."""
    return images.unsqueeze(1).expand(-1, 3, -1, -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="the folder that holds MNIST/raw")
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    train = MNIST(args.data_dir, train=True, download=False)
    test = MNIST(args.data_dir, train=False, download=False)
    net = DigitFeatures()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for epoch in range(args.epochs):
        order = torch.randperm(len(train.data))
        for batch in order.split(128):
            loss = F.cross_entropy(net.logits(as_rgb_uint8(train.data[batch])),
                                   train.targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            predicted = torch.cat([net.logits(as_rgb_uint8(b)).argmax(1)
                                   for b in test.data.split(1000)])
        print(f"epoch {epoch + 1}: test accuracy {(predicted == test.targets).float().mean():.4f}")
    torch.save(net.state_dict(), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
