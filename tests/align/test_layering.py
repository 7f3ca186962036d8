"""lsuite.align imports only torch, torch.fx, scipy and lsuite.errors / lsuite.functional."""

import subprocess
import sys


def test_align_imports_no_lightning_hydra_or_plotting():
    code = (
        "import sys, lsuite.align; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'pytorch_lightning', "
        "'hydra', 'wandb', 'matplotlib', 'sklearn'}), "
        "sorted(m for m in sys.modules if m.startswith('lsuite.') and not m.startswith("
        "('lsuite.align', 'lsuite.errors', 'lsuite.functional'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[] []"
