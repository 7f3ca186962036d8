"""Issue 10 item 10: a probe measured while training shows its progress in the training bar."""

from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from probe_fixtures import TinyData, tiny_module

from lsuite.callbacks.probe_callback import ProbeCallback
from lsuite.probes.hessian_trace import HessianTrace


def test_epoch_probe_progress_goes_into_the_training_bar(tmp_path, monkeypatch):
    shown = []
    original = Tqdm.set_postfix_str

    def spy(self, text="", refresh=True):
        shown.append(text)
        return original(self, text, refresh)

    monkeypatch.setattr(Tqdm, "set_postfix_str", spy)
    seed_everything(0)
    probe = ProbeCallback(
        HessianTrace(method="hutchinson", num_matvecs=6, rel_stderr=None, block_size=2),
        every_n_epochs=1,
        on_fit_end=False,
    )
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        default_root_dir=tmp_path,
        callbacks=[probe, TQDMProgressBar()],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(tiny_module(), datamodule=TinyData())
    lines = [t for t in shown if t.startswith("probe hessian_trace")]
    assert lines, shown
    assert lines[-1] == "probe hessian_trace 6/6 matvecs"


def test_epoch_probe_progress_is_a_task_of_the_rich_bar(tmp_path, monkeypatch):
    from lightning.pytorch.callbacks import RichProgressBar
    from rich.progress import Progress

    added, removed = [], []
    original_add, original_remove = Progress.add_task, Progress.remove_task

    def add(self, description, *args, **kwargs):
        added.append(description)
        return original_add(self, description, *args, **kwargs)

    def remove(self, task_id):
        removed.append(task_id)
        return original_remove(self, task_id)

    monkeypatch.setattr(Progress, "add_task", add)
    monkeypatch.setattr(Progress, "remove_task", remove)
    seed_everything(0)
    probe = ProbeCallback(
        HessianTrace(method="hutchinson", num_matvecs=6, rel_stderr=None, block_size=2),
        every_n_epochs=1,
        on_fit_end=False,
    )
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        default_root_dir=tmp_path,
        callbacks=[probe, RichProgressBar()],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(tiny_module(), datamodule=TinyData())
    assert [d for d in added if d.startswith("probe hessian_trace")] == [
        "probe hessian_trace 0/6 matvecs"
    ]
    assert len(removed) == 1
    assert len(probe.records_path.read_text().splitlines()) == 1
