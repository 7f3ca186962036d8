"""Synthetic signals as dict samples ``{"features": (8,), "label": ()}``."""

import lightning.pytorch as L
import torch
from torch.utils.data import DataLoader, Dataset


class Signals(Dataset):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.features = torch.randn(n, 8, generator=g)
        score = self.features[:, 0] + 0.5 * self.features[:, 1] * self.features[:, 2]
        self.label = torch.bucketize(score, torch.tensor([-0.5, 0.5]))

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i: int) -> dict:
        return {"features": self.features[i], "label": self.label[i]}


class SignalData(L.LightningDataModule):
    def __init__(self, num_train: int = 192, batch_size: int = 32) -> None:
        super().__init__()
        self.num_train = num_train
        self.batch_size = batch_size

    def setup(self, stage: str) -> None:
        self.train_set = Signals(self.num_train, seed=1)
        self.val_set = Signals(64, seed=2)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)
