"""Inverter models: what holding registers 7-8 and 19 say the inverter is, and what it has.

Pure. ``identify(registers)`` names the model from the firmware code (registers
7-8: its first letter the model, its second the variant) and the device type
code (register 19); a ``Model`` says which optional parts it has (``features``:
a generator port, split-phase legs, AFCI, ...), and so which named inputs,
which settings and which Home Assistant entities exist for it. An inverter
whose codes match no model is ``COMMON``: the parts every model has.

Sources, all public:

- LuxPower's Modbus protocol document (2025-06-14 edition, in the repository
  OwlBawl/Luxpower-Modbus-RTU): registers 7-8 are "model code / derived
  model, ODM code / region code"; register 19 the device type; which
  registers are "12K" or "US model" only.
- pylxpweb (joyfulhouse/pylxpweb, constants and docs/DEVICE_TYPES.md): the
  device type codes 12 (LXP-EU 12K), 44 (LXP-LB), 54 (SNA-US, EG4 6000XP and
  12000XP), 2092 (EG4 12kPV, 18kPV), 10284 (FlexBOSS), and which families are
  split phase, have peak shaving, quick charge, parallel operation.
- The letters of LuxPower models (the table of the LuxPython Home Assistant
  integration), and the captures in ../shared/vectors: an LXP-3600 ACS says
  ``BAAA`` and type 4, an LXP 3-6K Hybrid ``AAAA`` and 0, an LXP-LB-EU 12K
  ``FAAB`` and 44, an SNA ``cBaa`` and 6; an EG4 18kPV's firmware reads
  ``fAAB`` (DoubleDoc/EG4-18KPV-BatteryDetails).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import attrs

from octolux.lxp import inputs

FIRMWARE_CODE = (7, 8)  # four characters, two a register, low byte first
DEVICE_TYPE = 19

# The optional parts a model may have. Named inputs, settings and Home
# Assistant entities that need one say which (``InputField.feature``,
# ``Setting.feature``); everything else is on every model.
FEATURES: dict[str, str] = {
    "generator": "a generator input (input registers 121-126, generator charge 194-198)",
    "split_phase": "split-phase (L1/L2) output and grid legs (input 127-138, 193-204)",
    "afci": "arc-fault detection (input 140-152)",
    "ac_couple": "an AC-coupled inverter on its output (input 153)",
    "load": "its own load metering (input 170-173)",
    "parallel": "parallel operation (input 113)",
    "quick_charge": "one-click quick charge (input 210; holding 233 bit 0, 234)",
    "pv456": "PV strings 4-6 (input 217-231)",
    "smart_load": "a smart load port (input 232)",
    "off_grid": "off-grid settings: output priority, battery rating, AC-first times "
                "(holding 145, 147, 148, 152-157)",
    "peak_shaving": "grid peak shaving (holding 179 bit 7, 206, 207, 209-212)",
}

_HYBRID_12K = frozenset({"generator", "ac_couple", "load", "parallel", "smart_load",
                         "peak_shaving"})
_EG4_HYBRID = _HYBRID_12K | {"split_phase", "afci"}
_EG4_OFF_GRID = frozenset({"generator", "split_phase", "load", "parallel", "quick_charge",
                           "off_grid", "smart_load"})


@attrs.frozen
class Model:
    """One inverter model: its name, the codes that identify it and the parts it has."""

    slug: str  # as the simulator's --model takes it: lxp-3600-acs
    name: str  # as people (and the vendor's app) call it: LXP-3600 ACS
    firmware_letters: tuple[str, ...] = ()  # first two letters of registers 7-8, any case
    device_types: frozenset[int] = frozenset()  # register 19
    features: frozenset[str] = frozenset()

    def has(self, feature: str | None) -> bool:
        """True if the model has ``feature`` (None: a part every model has)."""
        return feature is None or feature in self.features


COMMON = Model("common", "unknown model")

MODELS: tuple[Model, ...] = (
    # Device type 0 is the vendor's "default": it names no model.
    Model("lxp-3-6k-hybrid", "LXP 3-6K Hybrid", ("AA",)),
    Model("gen-lb-eu-3-6k", "GEN-LB-EU 3-6K", ("AC",)),
    Model("lxp-3600-acs", "LXP-3600 ACS", ("BA",), frozenset({4})),
    # An SNA's captured inputs/5 carries a measured load (dongles.json, paulsteigel).
    Model("sna", "SNA 3000-6000", ("CB",), frozenset({6}),
          frozenset({"quick_charge", "off_grid", "generator", "load"})),
    Model("sna-us-6000", "SNA-US 6000", ("CC",), features=_EG4_OFF_GRID),
    Model("sna-12k", "SNA 12K", ("CF",), features=_EG4_OFF_GRID - {"split_phase"}),
    Model("lxp-lb-eu-7k", "LXP-LB-EU 7K", ("EA",)),
    Model("lxp-lb-eu", "LXP-LB-8-12K", ("FA",), frozenset({44}), _HYBRID_12K),
    Model("gen-lb-eu-7-10k", "GEN-LB-EU 7-10K", ("HA",)),
    Model("lxp-eu-12k", "LXP-EU 12K", device_types=frozenset({12}),
          features=_HYBRID_12K),
    Model("eg4-18kpv", "EG4 18kPV/12kPV", device_types=frozenset({2092}), features=_EG4_HYBRID),
    # Device type 54 is the SNA-US family, sold by EG4 as the 6000XP and 12000XP;
    # "CE" is the SNA-US 12K's firmware letters.
    Model("eg4-6000xp", "EG4 6000XP/12000XP", ("CE",), frozenset({54}), _EG4_OFF_GRID),
    Model("flexboss", "EG4 FlexBOSS", device_types=frozenset({10284}), features=_EG4_HYBRID),
)

MODELS_BY_SLUG: dict[str, Model] = {model.slug: model for model in MODELS}


def firmware_code(registers: Mapping[int, int]) -> str | None:
    """The four letters of registers 7-8 (``BAAA``); None until known, or if not letters."""
    if not all(register in registers for register in FIRMWARE_CODE):
        return None
    code = b"".join(registers[r].to_bytes(2, "little") for r in FIRMWARE_CODE)
    text = code.decode("latin-1").strip("\x00 ")
    if not (text and text.isascii() and text.isprintable()):
        return None
    return text


def known(registers: Mapping[int, int]) -> bool:
    """True once the registers that identify a model (7, 8 and 19) have been read."""
    return all(register in registers for register in (*FIRMWARE_CODE, DEVICE_TYPE))


def identify(registers: Mapping[int, int]) -> Model:
    """The model the holding registers describe, or ``COMMON`` if no model matches.

    The device type code (19) decides where a model is known by it (the EG4
    models share LuxPower's letters); else the firmware code's first two
    letters, in any case (an EG4 18kPV writes ``fAAB``, an SNA ``cBaa``).
    """
    device_type = registers.get(DEVICE_TYPE)
    code = firmware_code(registers)
    letters = code[:2].upper() if code else None
    by_type = [model for model in MODELS if device_type in model.device_types]
    if by_type:
        matching = [model for model in by_type if letters in model.firmware_letters]
        return (matching or by_type)[0]
    for model in MODELS:
        if letters in model.firmware_letters:
            return model
    return COMMON


def model_name(registers: Mapping[int, int]) -> str | None:
    """The model's name for people (``LXP-3600 ACS``); None if not known."""
    if firmware_code(registers) is None and DEVICE_TYPE not in registers:
        return None
    model = identify(registers)
    return None if model is COMMON else model.name


@functools.cache
def input_blocks(model: Model) -> tuple[int, ...]:
    """The ``inputs/<n>`` blocks the model answers: 1-3, and those of the parts it has."""
    return tuple(sorted({1, 2, 3} | {field.block for field in inputs.FIELDS
                                     if field.feature is not None
                                     and model.has(field.feature)}))
