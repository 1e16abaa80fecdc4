"""Cross-entropy that also trains on coarse set labels.

A source may say only "one of paper or cardboard". Its likelihood is the summed
probability of the classes in the set, so the loss is
``-log sum_{c in S} p_c = logsumexp(z) - logsumexp(z[S])``; for a single-class set
this is ordinary cross-entropy.

An empty set marks an out-of-distribution item (outlier exposure, Hendrycks et al.
2019): its loss is the cross-entropy to the uniform distribution, ``logsumexp(z) -
mean(z)``, weighted by ``ood_weight``, which teaches the model to spread its
probability (the bin's "not sure") on things that are none of the classes.
"""

from __future__ import annotations

import torch

from wastenet.evaluate.metrics import label_masks


def labels_to_mask(labels: list[tuple[str, ...]], classes: tuple[str, ...]) -> torch.Tensor:
    """Tuples of class names -> bool mask (N, C) of the allowed classes (``label_masks``)."""
    return torch.from_numpy(label_masks(labels, classes))


def set_label_loss(
    logits: torch.Tensor,
    mask: torch.Tensor,
    label_smoothing: float = 0.0,
    ood_weight: float = 1.0,
    per_row: bool = False,
) -> torch.Tensor:
    """Mean marginal-likelihood loss over the batch (``per_row``: each row's); smoothing
    mixes in uniform CE; rows with an empty mask (out-of-distribution items) count their
    uniform CE x ``ood_weight``."""
    logits = logits.float()
    log_norm = torch.logsumexp(logits, dim=1)
    uniform = log_norm - logits.mean(dim=1)
    ood = ~mask.any(dim=1)
    masked = logits.masked_fill(~mask | ood[:, None], float("-inf"))
    masked = masked.masked_fill(ood[:, None], 0.0)  # any finite value: the row is replaced
    nll = log_norm - torch.logsumexp(masked, dim=1)
    if label_smoothing > 0:
        nll = (1 - label_smoothing) * nll + label_smoothing * uniform
    rows = torch.where(ood, ood_weight * uniform, nll)
    return rows if per_row else rows.mean()
