"""Issue 10 item 10: a probe measured while training shows its progress in the training bar."""

from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from probe_fixtures import TinyData, tiny_module
from rich.progress import Progress

from lsuite.callbacks.probe_callback import ProbeCallback
from lsuite.probes.hessian_trace import HessianTrace


def spy_on(monkeypatch, cls, name, calls):
    original = getattr(cls, name)

    def spy(self, first, *args, **kwargs):
        calls.append(first)
        return original(self, first, *args, **kwargs)

    monkeypatch.setattr(cls, name, spy)


def fit_with_bar(tmp_path, bar):
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
        callbacks=[probe, bar],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(tiny_module(), datamodule=TinyData())
    return probe


def test_epoch_probe_progress_goes_into_the_tqdm_bar(tmp_path, monkeypatch):
    shown = []
    spy_on(monkeypatch, Tqdm, "set_postfix_str", shown)
    fit_with_bar(tmp_path, TQDMProgressBar())
    lines = [t for t in shown if t.startswith("probe hessian_trace")]
    assert lines, shown
    assert lines[-1] == "probe hessian_trace 6/6 matvecs"


def test_epoch_probe_progress_is_a_task_of_the_rich_bar(tmp_path, monkeypatch):
    added, removed = [], []
    spy_on(monkeypatch, Progress, "add_task", added)
    spy_on(monkeypatch, Progress, "remove_task", removed)
    probe = fit_with_bar(tmp_path, RichProgressBar())
    assert [d for d in added if d.startswith("probe hessian_trace")] == [
        "probe hessian_trace 0/6 matvecs"
    ]
    assert len(removed) == 1
    assert len(probe.records_path.read_text().splitlines()) == 1
