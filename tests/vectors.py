"""The captured frames of tests/data/frames.json (copied from the shared vectors)."""

import json
import pathlib

VECTORS_PATH = pathlib.Path(__file__).parent / "data" / "frames.json"
VECTORS = {vector["name"]: vector for vector in json.loads(VECTORS_PATH.read_text())}


def frame_bytes(name: str) -> bytes:
    """The bytes of one named captured frame."""
    return bytes.fromhex(VECTORS[name]["hex"])
