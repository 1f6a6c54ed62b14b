"""Training: the Trainer and what it uses (callbacks, checkpoints, metrics, losses, progress)."""
from .callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LambdaCallback,
    LRSchedulerStep,
    ModelCheckpoint,
)
from .checkpoint import load_checkpoint, save_checkpoint
from .history import History
from .losses import get_loss
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
from .trainer import Trainer

__all__ = [
    "Trainer", "train_step", "NonFiniteLossError", "History",
    "Metric", "FunctionMetric", "Accuracy", "TopKAccuracy", "MeanAbsoluteError", "MeanSquaredError",
    "get_metric", "get_loss", "accuracy", "top_k_accuracy", "confusion_matrix",
    "most_confused", "Callback", "ModelCheckpoint", "EarlyStopping", "LRSchedulerStep",
    "CSVLogger", "LambdaCallback", "save_checkpoint", "load_checkpoint",
]
