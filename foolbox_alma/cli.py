"""The ``foolbox-alma`` command line (also ``python -m foolbox_alma``).

Errors in the user's input end with one line naming the problem (exit status 2). Ctrl-C (SIGINT)
and SIGTERM end with one line, no traceback, and exit status 130 and 143: an evaluation says how
many shards are saved where and that rerunning the same command resumes.
"""

import argparse
import signal
import sys
from types import FrameType
from typing import Any, Optional, Sequence

from . import compare, demo
from ._io import plain_text
from ._version import __version__
from .bench import cli as bench
from .evaluation import cli as evaluate
from .pipeline.errors import EvaluationInterrupted

SUBCOMMANDS = (
    ("demo", demo, "attack a shipped zoo model with ALMA L2 and L1 (offline)"),
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
        "the same ALMA attack on several builds of a model (frameworks, files) and their agreement",
    ),
)
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="foolbox-alma",
        description="ALMA adversarial attacks for Foolbox models (PyTorch, TensorFlow, JAX).",
    )
    parser.add_argument("--version", action="version", version=f"foolbox-alma {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, module, summary in SUBCOMMANDS:
        sub = commands.add_parser(
            name,
            help=summary,
            description=plain_text(module.__doc__),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(handler=module.main)
    return parser


class _Stopped:
    """The signal that stopped the command (SIGTERM is turned into a KeyboardInterrupt)."""

    signal: int = signal.SIGINT

    @classmethod
    def on_terminate(cls, number: int, frame: Optional[FrameType]) -> Any:
        cls.signal = number
        raise KeyboardInterrupt


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _Stopped.signal = signal.SIGINT
    previous = signal.signal(signal.SIGTERM, _Stopped.on_terminate)
    try:
        return int(args.handler(args) or 0)
    except EvaluationInterrupted as stopped:
        print(f"foolbox-alma {args.command}: {stopped}", file=sys.stderr)
        return EXIT_CODES[_Stopped.signal]
    except KeyboardInterrupt:
        name = signal.Signals(_Stopped.signal).name
        print(f"foolbox-alma {args.command}: interrupted ({name})", file=sys.stderr)
        return EXIT_CODES[_Stopped.signal]
    except (ValueError, ImportError) as error:
        print(f"foolbox-alma {args.command}: error: {error}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
