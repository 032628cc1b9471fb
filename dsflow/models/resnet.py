"""ResNet-18, CIFAR variant (3x3 stem, no max-pool) for 32 x 32 x 3 inputs (the paper's CIFAR-10 oracle)."""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models import resnet18

__all__ = ["ResNet18"]


class ResNet18(nn.Module):
    """torchvision's ResNet-18 with a 3x3 stride-1 first convolution and no max-pool (He et al. 2016, CIFAR setup).

    Args:
        in_channels: input channels.
        num_classes: output logits.
        input_size: input height = width (32).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, input_size: int = 32) -> None:
        super().__init__()
        self.input_shape = (in_channels, input_size, input_size)
        self.num_classes = num_classes
        self.init_args = {"in_channels": in_channels, "num_classes": num_classes, "input_size": input_size}
        net = resnet18(weights=None, num_classes=num_classes)
        net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        """x (B, in_channels, H, W) -> logits (B, num_classes)."""
        return self.net(x)
