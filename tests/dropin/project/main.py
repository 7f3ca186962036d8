"""The project's command line: ``python -m project.main fit --config project/config.yaml``."""

from lightning.pytorch.cli import LightningCLI

from project.data import SignalData
from project.model import SignalNet


def cli_main(args: list[str] | None = None) -> LightningCLI:
    return LightningCLI(SignalNet, SignalData, args=args)


if __name__ == "__main__":
    cli_main()
