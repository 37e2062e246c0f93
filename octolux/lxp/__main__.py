"""``python -m octolux.lxp decode [--to-dongle] HEX [HEX ...]``: what is in these frames?

Prints one JSON object per frame, one per line. ``-`` reads one hex frame per
line from standard input. A line that is not a valid frame is reported on
standard error, the others are still decoded, and the exit status is 1.
The frames are taken as sent by the dongle (what the bridge logs as
"received"), or with ``--to-dongle`` as sent to it (a client's requests, what
the bridge logs as "sending"): the bytes alone cannot always tell.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable

from octolux.lxp.describe import describe
from octolux.lxp.frames import Direction, FrameError, parse


def _hex_inputs(arguments: list[str]) -> Iterable[str]:
    for argument in arguments:
        if argument == "-":
            yield from (line.strip() for line in sys.stdin if line.strip())
        else:
            yield argument


def decode(arguments: list[str], direction: Direction = Direction.FROM_DONGLE) -> int:
    """Decode each hex frame, sent in ``direction``; return the exit status."""
    status = 0
    for number, text in enumerate(_hex_inputs(arguments), 1):
        cleaned = "".join(text.split()).removeprefix("0x")
        try:
            frame = parse(bytes.fromhex(cleaned), direction)
        except ValueError as error:  # FrameError, or not hex at all
            reason = error.reason if isinstance(error, FrameError) else "not hexadecimal"
            print(f"frame {number}: {reason}: {text[:80]}", file=sys.stderr)
            status = 1
            continue
        print(json.dumps(describe(frame), ensure_ascii=False))
    return status


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m octolux.lxp", description="Tools for the LXP datalogger protocol."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    decoder = commands.add_parser(
        "decode", help="decode hex frames into JSON, one object per line"
    )
    decoder.add_argument(
        "--to-dongle", action="store_true",
        help="the frames were sent to the dongle (requests); by default they came from it",
    )
    decoder.add_argument("frames", nargs="+", metavar="HEX", help="a frame in hex, or - for stdin")
    arguments = parser.parse_args(argv)
    direction = Direction.TO_DONGLE if arguments.to_dongle else Direction.FROM_DONGLE
    return decode(arguments.frames, direction)


if __name__ == "__main__":
    sys.exit(main())
