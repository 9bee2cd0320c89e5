"""ADVENT's fully convolutional discriminator (DESIGN.md §4).

Input: the weighted self-information map -P log P (N x C x H x W). Four 4x4
stride-2 convs with leaky ReLU 0.2 and a 4x4 stride-2 classifier; widths
ndf, 2ndf, 4ndf, 8ndf, 1 (ndf = 64 in the paper).
"""

from __future__ import annotations

import torch.nn as nn


class EntropyDiscriminator(nn.Module):
    def __init__(self, num_classes: int, ndf: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = [num_classes, ndf, ndf * 2, ndf * 4, ndf * 8]
        for cin, cout in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(channels[-1], 1, 4, stride=2, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
