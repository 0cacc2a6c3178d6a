import math

import pytest
import torch

from mmgraph.nn import FeatureMaskingLoss


def test_feature_masking_loss_by_hand_without_dropout():
    head = FeatureMaskingLoss(2, p=0.0)
    with torch.no_grad():
        head.target.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))  # swap coordinates
        head.target.bias.zero_()
    h = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # cos((1,0),(0,1)) = 0 and cos((1,1),(1,1)) = 1: loss = 1 - (0 + 1) / 2
    assert head(h).item() == pytest.approx(0.5)


def test_feature_masking_drops_entries_in_training_only():
    torch.manual_seed(0)
    head = FeatureMaskingLoss(4, p=0.5)
    with torch.no_grad():
        head.target.weight.copy_(torch.eye(4))
        head.target.bias.zero_()
    h = torch.ones(1000, 4)
    head.eval()
    assert head(h).item() == pytest.approx(0.0, abs=1e-6)  # identity target, no masking
    head.train()
    # Each kept-entry pattern with j of 4 ones has cosine sqrt(j/4) with the all-ones row.
    expected = 1 - sum(math.comb(4, j) / 16 * math.sqrt(j / 4) for j in range(5))
    assert head(h).item() == pytest.approx(expected, abs=0.02)


def test_feature_masking_gradient_reaches_input_and_target():
    head = FeatureMaskingLoss(3, p=0.5)
    h = torch.randn(8, 3, requires_grad=True)
    head(h).backward()
    assert h.grad.abs().sum() > 0
    assert head.target.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        FeatureMaskingLoss(3, p=1.0)
