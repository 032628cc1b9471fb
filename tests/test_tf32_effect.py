"""The TF32 simulation of benchmarks/tf32_effect.py: TF32 rounding in closed form, and products inside the mode."""

from __future__ import annotations

import torch

from dsflow.experiments.tf32_effect import SimulatedTF32, tf32_round


def test_tf32_keeps_ten_mantissa_bits_rounding_to_nearest() -> None:
    ulp = 2.0**-10  # TF32's spacing just above 1
    x = torch.tensor([1 + ulp / 4, 1 + 3 * ulp / 4, -(3 + ulp / 2), 1 + ulp, 1000.0])
    assert tf32_round(x).tolist() == [1.0, 1 + ulp, -3.0, 1 + ulp, 1000.0]  # -3 - ulp/2: below half of 3's ulp (2^-9)


def test_products_inside_the_mode_see_tf32_inputs_and_nothing_else_changes() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(32, 16, generator=gen), torch.randn(16, 8, generator=gen)
    with SimulatedTF32():
        inside, summed = a @ b, a + 1e-6
    torch.testing.assert_close(inside, tf32_round(a) @ tf32_round(b), rtol=0, atol=0)
    assert not torch.equal(inside, a @ b)
    assert torch.equal(summed, a + 1e-6)  # not a product: untouched
    doubles = a.double() @ b.double()
    with SimulatedTF32():
        assert torch.equal(a.double() @ b.double(), doubles)  # float64 products are not TF32's business
