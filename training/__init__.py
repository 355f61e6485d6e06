"""GRAM training: the loss phases (training.loss) and the training loop (training.loop)."""
from training.loop import TrainingError, TrainingInterrupted, training_loop
from training.loss import GramLoss, is_power_of_two
