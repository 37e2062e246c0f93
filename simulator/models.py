"""The inverter models the simulator can be (``--model``) and the dongle kinds (``--dongle``).

A ``SimulatedModel`` is an ``octolux.lxp.models.Model`` (what the bridge knows
of it: its name and optional parts) with what the simulator needs to be one:
the codes it reports in holding registers 0-1, 7-10 and 19, and how many input
registers it answers. The codes are those of real units (the captures in
../shared/vectors, and pylxpweb's docs/DEVICE_TYPES.md for HOLD_MODEL values);
the physics behind them is the same plant for every model.

A ``DongleKind`` is how the WiFi dongle in front of it talks: a BA dongle
replies with address byte 1 and broadcasts as ``--format`` says; BJ and DG
dongles reply with address byte 0 and protocol 5, push holding registers 0-79
to a client as it connects, and push input registers as 127-register frames
from 0, 127 and 254 (PROTOCOL.md; the BJ, DG and SNA captures in dongles.json).
"""

from __future__ import annotations

import enum

import attrs

from octolux.lxp import models
from octolux.lxp.models import Model


@attrs.frozen
class SimulatedModel:
    """One model as the simulator plays it."""

    model: Model
    firmware: str  # registers 7-8: four characters
    device_type: int  # register 19
    hold_model: int  # registers 0-1: the vendor's bit field of options (low word first)
    versions: tuple[int, int]  # registers 9 and 10
    input_count: int  # input registers 0 .. input_count - 1 exist

    @property
    def slug(self) -> str:
        """As ``--model`` takes it."""
        return self.model.slug


_BY_SLUG = models.MODELS_BY_SLUG

SIMULATED_MODELS: dict[str, SimulatedModel] = {
    simulated.slug: simulated
    for simulated in (
        # The captured unit of tests/vectors: registers 0-1, 9-10 and 19 as captured.
        SimulatedModel(_BY_SLUG["lxp-3600-acs"], "BAAA", 4, 35462 | 1 << 16, (2561, 266), 160),
        # A DG dongle's LXP-LB-EU 12K (dongles.json, lxpmodbus_unsolicited_hold_reply_0_79).
        SimulatedModel(_BY_SLUG["lxp-lb-eu"], "FAAB", 44, 2752 | 9 << 16, (7171, 284), 381),
        # An SNA behind a BA dongle pushing three 127-register frames (paulsteigel captures).
        SimulatedModel(_BY_SLUG["sna"], "cBaa", 6, 6784 | 1 << 16, (36402, 406), 381),
        # HOLD_MODEL 0x986C0 (pylxpweb's 18KPV); firmware fAAB (DoubleDoc's 18KPV).
        SimulatedModel(_BY_SLUG["eg4-18kpv"], "fAAB", 2092, 0x986C0, (6915, 284), 381),
        # HOLD_MODEL 0x90AC1 (pylxpweb's SNA12K-US, sold by EG4 as the 12000XP).
        SimulatedModel(_BY_SLUG["eg4-6000xp"], "CEAA", 54, 0x90AC1, (7171, 284), 381),
    )
}

DEFAULT_MODEL = SIMULATED_MODELS["lxp-3600-acs"]


class DongleKind(enum.Enum):
    """The WiFi dongle's series: how it answers and what it sends of its own accord."""

    BA = "ba"
    BJ = "bj"
    DG = "dg"

    @property
    def reply_address(self) -> int:
        """The address byte of its replies: 1, or 0 on BJ and DG dongles."""
        return 1 if self is DongleKind.BA else 0

    @property
    def pushes(self) -> bool:
        """True if it pushes holding 0-79 on connect and inputs as 127-register frames."""
        return self is not DongleKind.BA
