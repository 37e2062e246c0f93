"""The captured frames of tests/data/frames.json (copied from the shared vectors).

Each was sent one way: the requests by a client to the dongle, the rest
(replies, broadcasts, heartbeats, parameter replies) by the dongle; the name
says which, and ``direction_of`` reads it.
"""

import json
import pathlib

from octolux import lxp

VECTORS_PATH = pathlib.Path(__file__).parent / "data" / "frames.json"
VECTORS = {vector["name"]: vector for vector in json.loads(VECTORS_PATH.read_text())}


def frame_bytes(name: str) -> bytes:
    """The bytes of one named captured frame."""
    return bytes.fromhex(VECTORS[name]["hex"])


def direction_of(name: str) -> lxp.Direction:
    """Who sent the named frame: a client its requests, the dongle everything else."""
    return lxp.Direction.TO_DONGLE if "request" in name else lxp.Direction.FROM_DONGLE


def parsed(name: str) -> lxp.Frame:
    """One named captured frame, parsed as sent by whoever sent it."""
    return lxp.parse(frame_bytes(name), direction_of(name))


# Real dongles' frames exactly as published (tests/data/dongles.json, copied
# from the shared vectors): {name, hex, source, claimed, structure_ok, crc_ok,
# notes}. Some are broken as published, on purpose.
DONGLES_PATH = pathlib.Path(__file__).parent / "data" / "dongles.json"
DONGLES = {vector["name"]: vector for vector in json.loads(DONGLES_PATH.read_text())}


def dongle_bytes(name: str) -> bytes:
    """The bytes of one named frame of a real dongle, as published."""
    return bytes.fromhex(DONGLES[name]["hex"])
