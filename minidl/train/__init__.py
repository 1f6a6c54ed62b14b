"""Training: the Trainer (the one training loop) and what it uses.

``trainer.py`` Trainer (fit / evaluate / predict, resumable state); ``step.py`` train_step
(one optimisation step) and NonFiniteLossError; ``losses.py`` the one table of loss names;
``metrics.py`` metrics and their array versions (accuracy, confusion_matrix, ...);
``callbacks.py`` ModelCheckpoint, EarlyStopping, LRSchedulerStep, CSVLogger, TensorBoard,
LambdaCallback; ``tensorboard.py`` event-file writers; ``checkpoint.py`` checkpoint files;
``history.py`` History; ``progress.py`` progress bars; ``resume.py`` the trainer's state;
``epoch_state.py`` an epoch in progress; ``interrupt.py`` stopping on SIGINT/SIGTERM
(TrainingInterrupted); ``diagnose.py`` NaN in the data against divergence, and which layer
ran out of memory.
``minidl.keras`` and the ``minidl`` command are built on this package.
"""
from .callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LambdaCallback,
    LRSchedulerStep,
    ModelCheckpoint,
    TensorBoard,
)
from .checkpoint import load_checkpoint, save_checkpoint
from .history import History
from .interrupt import TrainingInterrupted
from .losses import get_loss, loss_names
from .metrics import (
    Accuracy,
    FunctionMetric,
    MeanAbsoluteError,
    MeanSquaredError,
    Metric,
    TopKAccuracy,
    accuracy,
    confusion_matrix,
    get_metric,
    most_confused,
    top_k_accuracy,
)
from .step import NonFiniteLossError, train_step
from .trainer import Trainer, model_accuracy

__all__ = [
    "Trainer", "train_step", "NonFiniteLossError", "History",
    "Metric", "FunctionMetric", "Accuracy", "TopKAccuracy", "MeanAbsoluteError", "MeanSquaredError",
    "get_metric", "get_loss", "loss_names", "accuracy", "top_k_accuracy", "confusion_matrix",
    "most_confused", "Callback", "ModelCheckpoint", "EarlyStopping", "LRSchedulerStep",
    "CSVLogger", "TensorBoard", "LambdaCallback", "save_checkpoint", "load_checkpoint",
    "model_accuracy", "TrainingInterrupted",
]
