"""Learning-rate schedules with ``torch.optim.lr_scheduler``'s formulas and calling convention.

Create the scheduler after the optimiser and call ``scheduler.step()`` after
``optimizer.step()``: once per epoch for most, once per batch for OneCycleLR and CyclicLR.
Constructing a scheduler sets the learning rates for step 0. Each ``step()`` updates the
groups' *current* lr (torch's chainable form), so schedulers stepped together on one
optimiser compose: StepLR(step_size=2, gamma=0.5) and ExponentialLR(gamma=0.9) give
``0.1 * 0.5**2 * 0.9**4`` after 4 epochs from 0.1.

``base.py`` the LRScheduler protocol; ``multiplicative.py`` the factor schedules (StepLR,
MultiStepLR, ConstantLR, LinearLR, ExponentialLR, PolynomialLR, LambdaLR, MultiplicativeLR);
``cyclic.py`` the cosine and cyclical ones (CosineAnnealingLR, CosineAnnealingWarmRestarts,
CyclicLR, OneCycleLR); ``plateau.py`` ReduceLROnPlateau; ``composite.py`` SequentialLR and
ChainedScheduler.
"""
from .base import LRScheduler
from .composite import ChainedScheduler, SequentialLR
from .cyclic import CosineAnnealingLR, CosineAnnealingWarmRestarts, CyclicLR, OneCycleLR
from .multiplicative import (
    ConstantLR,
    ExponentialLR,
    LambdaLR,
    LinearLR,
    MultiplicativeLR,
    MultiStepLR,
    PolynomialLR,
    StepLR,
)
from .plateau import ReduceLROnPlateau

__all__ = ["LRScheduler", "StepLR", "MultiStepLR", "ConstantLR", "LinearLR", "ExponentialLR",
           "PolynomialLR", "LambdaLR", "MultiplicativeLR", "CosineAnnealingLR",
           "CosineAnnealingWarmRestarts", "CyclicLR", "OneCycleLR", "ReduceLROnPlateau",
           "SequentialLR", "ChainedScheduler"]
