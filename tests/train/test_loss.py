"""The CUDA loss path (a plain sum over labelled pixels) equals torch's mean cross-entropy."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ablate.evaluate.metrics import IGNORE_INDEX
from ablate.train.loop import cross_entropy, labelled_mean_cross_entropy


def test_the_deterministic_reduction_equals_the_mean_over_labelled_pixels():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 6, generator=gen, requires_grad=True)
    target = torch.randint(0, 4, (2, 5, 6), generator=gen)
    target[0, :2] = IGNORE_INDEX  # 12 unlabelled pixels of 60
    reference = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    ours = labelled_mean_cross_entropy(logits, target)
    assert torch.allclose(ours, reference, rtol=1e-6)
    (g_ref,) = torch.autograd.grad(reference, logits)
    (g_ours,) = torch.autograd.grad(ours, logits)
    assert torch.allclose(g_ours, g_ref, atol=1e-7)
    assert torch.equal(cross_entropy(logits, target), reference)  # the CPU keeps torch's mean
