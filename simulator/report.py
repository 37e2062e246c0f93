"""What the simulated inverter reports: the plant's state as named input values. Pure.

Keyed as ``octolux.lxp.inputs.FIELDS`` and in their units; the plant packs
them into registers with ``encode_inputs``, so no register layout is written here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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

    Unnamed registers (block 4: no generator, no split-phase EPS) read 0.
    A pure function of the state: calling it twice gives the same values.
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
    return values

