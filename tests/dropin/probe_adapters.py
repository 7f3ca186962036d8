"""What a user adds next to their project for lsuite: map the project's dict batches to pairs."""


def features_label(batch: dict) -> tuple:
    """Return ``(inputs, targets)`` of a ``{"features": (B, 8), "label": (B,)}`` batch."""
    return batch["features"], batch["label"]
