"""The flow-map network h: x0 -> xT of paper section 6.3 / 7.2 (appendix C: an autoencoder-type network).

Encoder: 2 convolutions (3 x 3, stride 2, ReLU) then 5 fully connected layers; decoder: the mirror image
(5 fully connected layers, then 2 transposed convolutions). The output is linear (no sigmoid): flowed particles
are not confined to the [0, 1] pixel range.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["FlowMapAutoencoder"]


def _halve(side: int) -> int:
    """Side after a 3 x 3 convolution with stride 2 and padding 1."""
    return (side + 1) // 2


class FlowMapAutoencoder(nn.Module):
    """h: (B, c, s, s) -> (B, c, s, s), an encoder of 2 conv + 5 linear layers and its mirror-image decoder.

    Args:
        in_channels: image channels c.
        input_size: image side s.
        channels: output channels of the two convolutions.
        hidden: widths of the 5 fully connected encoder layers (the last is the code size); the decoder runs
            them backwards.
    """

    def __init__(self, in_channels: int = 1, input_size: int = 28, channels: tuple[int, int] = (16, 32),
                 hidden: tuple[int, ...] = (512, 256, 128, 128, 64)) -> None:
        super().__init__()
        channels, hidden = tuple(int(c) for c in channels), tuple(int(h) for h in hidden)  # type: ignore[assignment]  # length checked next
        if len(channels) != 2 or len(hidden) != 5:
            raise ValueError(f"FlowMapAutoencoder: need 2 conv channels and 5 hidden widths, got {channels} and {hidden}")
        if input_size < 4 or min(channels + hidden) < 1 or in_channels < 1:
            raise ValueError(f"FlowMapAutoencoder: input_size must be >= 4 and all widths >= 1, got {input_size}, {channels}, {hidden}")
        self.input_shape = (in_channels, input_size, input_size)
        self.init_args = {"in_channels": in_channels, "input_size": input_size, "channels": list(channels), "hidden": list(hidden)}
        s1 = _halve(input_size)
        s2 = _halve(s1)
        self._code_shape = (channels[1], s2, s2)
        flat = channels[1] * s2 * s2
        widths = (flat, *hidden)
        enc = [nn.Conv2d(in_channels, channels[0], 3, 2, 1), nn.ReLU(), nn.Conv2d(channels[0], channels[1], 3, 2, 1), nn.ReLU(), nn.Flatten()]
        for i in range(5):
            enc += [nn.Linear(widths[i], widths[i + 1]), nn.ReLU()]
        self.encoder = nn.Sequential(*enc[:-1])  # no ReLU on the code
        dec: list[nn.Module] = []
        for i in range(5, 0, -1):
            dec += [nn.Linear(widths[i], widths[i - 1]), nn.ReLU()]
        dec += [nn.Unflatten(1, self._code_shape)]
        # ConvTranspose2d(k=3, stride=2, padding=1) maps side t to 2t - 1 + output_padding
        dec += [nn.ConvTranspose2d(channels[1], channels[0], 3, 2, 1, output_padding=s1 - (2 * s2 - 1)), nn.ReLU()]
        dec += [nn.ConvTranspose2d(channels[0], in_channels, 3, 2, 1, output_padding=input_size - (2 * s1 - 1))]
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: Tensor) -> Tensor:
        """x (B, c, s, s) -> code (B, hidden[-1])."""
        return self.encoder(x)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, c, s, s) or flat (B, c s s) -> h(x) of the same shape."""
        shape = x.shape
        if x.ndim == 2:
            x = x.reshape(-1, *self.input_shape)  # (B, c, s, s)
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"FlowMapAutoencoder: expects inputs of shape (B, {self.input_shape}), got {tuple(shape)}")
        return self.decoder(self.encoder(x)).reshape(shape)
