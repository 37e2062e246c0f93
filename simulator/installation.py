"""The simulated installation: the inverter's and battery's ratings, the PV array, its history.

Plain numbers shared by the plant (``simulator.plant``), its power flows
(``simulator.flows``) and what it reports (``simulator.report``).
"""

from __future__ import annotations

MAX_POWER = 3600  # W: the inverter's and the battery's limit at 100 %
BATTERY_CELLS = 16  # LFP cells in series: 51.2 V nominal
BATTERY_AMP_HOURS = 200
CAPACITY_WH = 10240.0
EFFICIENCY = 0.95  # each way, battery in and out
STATE_OF_HEALTH = 98
PV_PEAK = (2200.0, 1800.0, 0.0)  # W per string at a clear midsummer noon; no string 3

# Energy counters: e_<key>_day and e_<key>_all of the input registers.
ENERGY_KEYS = (
    "pv_1", "pv_2", "pv_3", "inv", "rec", "chg", "dischg", "eps", "to_grid", "to_user",
    "load_meter",
)

# A plausible history, in Wh (the founding spec's example totals).
INITIAL_TOTALS = {
    "pv_1": 900_000.0, "pv_2": 775_600.0, "pv_3": 0.0, "inv": 943_900.0, "rec": 1_099_300.0,
    "chg": 1_251_200.0, "dischg": 1_151_600.0, "eps": 0.0, "to_grid": 124_000.0,
    "to_user": 1_115_800.0, "load_meter": 836_400.0,  # to_user + inv - rec - to_grid
}
INITIAL_RUNTIME = 31_622_400.0  # s: a year and a day of service
INITIAL_CYCLES = 120
