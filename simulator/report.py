"""What the simulated inverter reports: the plant's state as named input values. Pure.

Keyed as ``octolux.lxp.inputs.FIELDS`` and in their units; the plant packs
them into registers with ``encode_inputs``, so no register layout is written here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from octolux.lxp import batteries
from octolux.lxp.inputs import FIELDS_BY_KEY
from simulator.installation import (
    BATTERY_AMP_HOURS,
    BATTERY_CELLS,
    CAPACITY_WH,
    ENERGY_KEYS,
    INITIAL_CYCLES,
    INITIAL_TOTALS,
    MAX_POWER,
    PV_PEAK,
    STATE_OF_HEALTH,
)

if TYPE_CHECKING:
    from simulator.plant import Plant


def input_values(plant: Plant) -> dict[str, int | float | str]:
    """What the inverter reports now, keyed as ``octolux.lxp.inputs.FIELDS``, in its units.

    Only the keys of the plant's model (``Model.has`` their feature); what a
    model has but the plant does not simulate (a generator, AFCI, a smart load,
    quick charge, other inverters in parallel) reads 0. A split-phase model's
    legs each carry half. A pure function of the state: calling it twice gives
    the same values.
    """
    flows = plant.flows
    battery = flows.battery
    v_bat = 48.0 + 5.6 * plant.soc / 100.0 + 0.8 * battery / MAX_POWER
    throughput = flows.p_inv + flows.p_rec + flows.eps
    t_bat = round(21 + abs(battery) / 1000)
    cell = v_bat / BATTERY_CELLS
    if not flows.off_grid:  # the EPS output follows the grid
        v_eps, f_eps = plant.v_grid, plant.f_grid
    elif flows.eps > 0:  # the inverter makes its own: registers 90 and 91
        v_eps = float(plant.holding.values[90])
        f_eps = float(plant.holding.values[91])
    else:
        v_eps = f_eps = 0.0
    charged = plant.energy_all["chg"] - INITIAL_TOTALS["chg"]
    values: dict[str, int | float | str] = {
        # -- inputs/1
        "status": flows.status,
        "v_bat": v_bat,
        "soc": round(plant.soc),
        "soh": STATE_OF_HEALTH,
        "p_charge": flows.charge,
        "p_discharge": flows.discharge,
        "v_acr": 0.0 if flows.off_grid else plant.v_grid,
        "f_ac": 0.0 if flows.off_grid else plant.f_grid,
        "p_inv": flows.p_inv,
        "p_rec": flows.p_rec,
        "pf": 1.0,
        "v_eps": v_eps,
        "f_eps": f_eps,
        "p_eps": flows.eps,
        "s_eps": flows.eps,
        "p_to_grid": max(-flows.grid, 0.0),
        "p_to_user": max(flows.grid, 0.0),
        "v_bus_1": 380.0 + 0.4 * (plant.v_grid - 240.0),
        "v_bus_2": 310.0 + 0.3 * (plant.v_grid - 240.0),
        # -- inputs/2
        "t_inner": 28 + throughput / 300,
        "t_rad_1": 24 + throughput / 400,
        "t_rad_2": 23 + throughput / 450,
        "t_bat": t_bat,
        "runtime": int(plant.runtime),
        # -- inputs/3: a BMS with the founding spec's example limits
        "max_chg_curr": 105.0,
        "max_dischg_curr": 150.0,
        "charge_volt_ref": 53.2,
        "dischg_cut_volt": 40.0,
        "bat_status_5": 192,
        "bat_status_inv": 3,
        "bat_count": 1,
        "bat_capacity": BATTERY_AMP_HOURS,
        "bat_current": battery / v_bat,
        "max_cell_voltage": cell + 0.004,
        "min_cell_voltage": cell - 0.004,
        "max_cell_temp": t_bat + 1.5,
        "min_cell_temp": t_bat - 0.5,
        "bat_cycle_count": INITIAL_CYCLES + int(charged // CAPACITY_WH),
        "v_bat_inv": v_bat - 0.1,
        "inverter_serial": plant.inverter_serial,
    }
    for string, (peak, power, available) in enumerate(
        zip(PV_PEAK, flows.pv, flows.pv_available, strict=True), 1
    ):
        values[f"p_pv_{string}"] = power
        # The string voltage rises steeply with the first light, then flattens.
        volts = 250.0 + 110.0 * (available / peak) ** 0.25 if available else 0.0
        values[f"v_pv_{string}"] = volts
    for key in ENERGY_KEYS:
        # kWh in whole tenths, as a meter counts them: a tenth shows once it is complete.
        values[f"e_{key}_day"] = plant.energy_day[key] // 100 / 10
        values[f"e_{key}_all"] = plant.energy_all[key] // 100 / 10
    if plant.batteries:
        values["bat_count"] = plant.batteries
    values["p_load_meter"] = flows.load
    values["parallel_count"] = 1
    values.update(_split_phase(values))
    model = plant.model.model
    return {key: value for key, value in values.items()
            if model.has(FIELDS_BY_KEY[key].feature)}


# Leg values of a split-phase model: half the total each.
_LEGS = ("v_eps", "p_eps", "s_eps", "p_inv", "p_rec", "p_to_grid", "p_to_user")


def _split_phase(values: dict) -> dict:
    legs = {}
    for key in _LEGS:
        legs[f"{key}_l1"] = legs[f"{key}_l2"] = values[key] / 2
    legs["v_grid_l1"] = legs["v_grid_l2"] = values["v_acr"] / 2
    for when in ("day", "all"):
        legs[f"e_eps_l1_{when}"] = legs[f"e_eps_l2_{when}"] = values[f"e_eps_{when}"] // 0.2 / 10
    return legs



def battery_module(plant: Plant, index: int) -> dict[str, int | float | str]:
    """Module ``index`` (0-based) of the plant's battery, which the modules share equally.

    Each module a little apart from the others in charge, cycles and cell
    temperature, as real ones are.
    """
    flows = plant.flows
    v_bat = 48.0 + 5.6 * plant.soc / 100.0 + 0.8 * flows.battery / MAX_POWER
    cell = v_bat / BATTERY_CELLS
    t_cell = 21 + abs(flows.battery) / 1000 + 0.5 * (index % 3)
    return {
        "header": 0xC003,  # a connected module, as pylxpweb and DoubleDoc saw it
        "capacity": round(BATTERY_AMP_HOURS / plant.batteries),
        "charge_volt_ref": 56.0,
        "max_chg_curr": 100.0,
        "max_dischg_curr": 100.0,
        "dischg_cut_volt": 44.8,
        "voltage": v_bat,
        "current": flows.battery / v_bat / plant.batteries,
        "soc": min(100, max(0, round(plant.soc) - index % 3 + 1)),
        "soh": STATE_OF_HEALTH,
        "cycle_count": INITIAL_CYCLES + index,
        "max_cell_temp": t_cell + 1.0,
        "min_cell_temp": t_cell,
        "max_cell_voltage": cell + 0.004,
        "min_cell_voltage": cell - 0.004,
        "max_cell_voltage_number": 1 + index % BATTERY_CELLS,
        "min_cell_voltage_number": 1 + (index + 5) % BATTERY_CELLS,
        "max_cell_temp_number": 1 + (index + 2) % BATTERY_CELLS,
        "min_cell_temp_number": 1 + (index + 9) % BATTERY_CELLS,
        "firmware": "2.17",
        "serial": f"SIMBAT{index + 1:04d}",
    }


def battery_registers(plant: Plant, rotation: int = 0) -> tuple[int, ...]:
    """Input registers 5002-5121: up to 4 modules, from module ``rotation`` on, in turn."""
    registers: list[int] = []
    for slot in range(min(batteries.SLOTS, plant.batteries)):
        index = (rotation + slot) % plant.batteries
        registers += batteries.encode_module(battery_module(plant, index))
    empty = batteries.SLOTS * batteries.MODULE_REGISTERS - len(registers)
    return (*registers, *(0,) * empty)
