"""LeNet-5 with ReLU activations for 28 x 28 inputs (the paper's MNIST oracle, appendix C)."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["LeNet5"]


class LeNet5(nn.Module):
    """conv(6, 5x5, pad 2) - pool - conv(16, 5x5) - pool - fc 120 - fc 84 - fc num_classes, ReLU throughout.

    Args:
        in_channels: input channels (1 for gray digits).
        num_classes: output logits.
        input_size: input height = width (28).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> None:
        super().__init__()
        if input_size < 12:
            raise ValueError(f"LeNet5: input_size must be >= 12, got {input_size}")
        self.input_shape = (in_channels, input_size, input_size)
        self.num_classes = num_classes
        self.init_args = {"in_channels": in_channels, "num_classes": num_classes, "input_size": input_size}
        side = ((input_size // 2) - 4) // 2  # after conv(pad 2) -> pool -> conv(5) -> pool
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * side * side, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """x (B, in_channels, input_size, input_size) -> logits (B, num_classes)."""
        return self.classifier(self.features(x))
