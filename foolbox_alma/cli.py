"""The ``foolbox-alma`` command line (also ``python -m foolbox_alma``)."""

import argparse
import sys
from typing import Optional, Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="foolbox-alma",
        description="ALMA adversarial attacks for Foolbox models (PyTorch, TensorFlow, JAX).",
    )
    from ._version import __version__

    parser.add_argument("--version", action="version", version=f"foolbox-alma {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    from . import compare, demo
    from .bench import cli as bench
    from .evaluation import cli as evaluate

    subcommands = [
        ("demo", demo, "attack the shipped MNIST SmallCNN with ALMA L2 and L1 (offline)"),
        (
            "bench",
            bench,
            "benchmark ALMA against Foolbox's and adv_lib's attacks (the paper's metrics)",
        ),
        (
            "evaluate",
            evaluate,
            "evaluate your model's robustness over a whole data set (in-process or on Ray)",
        ),
        (
            "compare",
            compare,
            "run the same ALMA attack in every installed framework and compare the results",
        ),
    ]
    for name, module, summary in subcommands:
        sub = commands.add_parser(
            name,
            help=summary,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(handler=module.main)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ValueError, ImportError) as error:
        print(f"foolbox-alma {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
