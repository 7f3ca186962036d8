"""Overrides for a tiny ``lsuite-train`` run in the CLI tests: 2 epochs of 3 steps, a 16-wide MLP.

The default callbacks (progress bar included) and ``test=true`` stay; add ``logger=...``,
``data.batch_size=...`` and the feature's own keys.
"""

TINY_RUN = [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "model.width=16",
    "model.depth=1",
]
