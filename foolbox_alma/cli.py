"""The ``foolbox-alma`` command line (also ``python -m foolbox_alma``)."""

import argparse
import sys
from typing import Optional, Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="foolbox-alma",
        description="ALMA adversarial attacks for Foolbox models (PyTorch, TensorFlow, JAX).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    from . import demo

    demo_parser = commands.add_parser(
        "demo",
        help="attack the shipped MNIST SmallCNN with ALMA L2 and L1 (offline)",
        description=demo.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(handler=demo.main)

    from .bench import cli as bench

    bench_parser = commands.add_parser(
        "bench",
        help="benchmark ALMA against Foolbox's and adv_lib's attacks (the paper's metrics)",
        description=bench.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_arguments(bench_parser)
    bench_parser.set_defaults(handler=bench.main)

    from . import compare

    compare_parser = commands.add_parser(
        "compare",
        help="run the same ALMA attack in every installed framework and compare the results",
        description=compare.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compare.add_arguments(compare_parser)
    compare_parser.set_defaults(handler=compare.main)
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
