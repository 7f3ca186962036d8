"""Every name in lsuite.__all__ resolves, and importing a probe does not import Lightning."""

import subprocess
import sys

import lsuite


def test_every_public_name_resolves():
    for name in lsuite.__all__:
        assert getattr(lsuite, name) is not None, name


def test_probes_do_not_import_lightning():
    code = (
        "import sys, lsuite.probes.hessian_trace, lsuite.probes.plane, lsuite.probes.sharpness; "
        "print(any(m.split('.')[0] in ('lightning', 'pytorch_lightning', 'hydra', 'wandb', "
        "'matplotlib') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
