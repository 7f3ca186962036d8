"""Optimizers and learning-rate schedules for training, completed by the LightningModule."""
