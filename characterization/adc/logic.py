"""SAR logic energy from SPICE: a transistor-level sky130 flip-flop's supply current.

The SPICE SAR's logic is XSPICE digital (``_netlists.sar_deck``), which draws no supply
current. Its energy is therefore measured on its register cell instead: a static
transmission-gate master-slave D flip-flop (``netlists/adc/dff.cir``, minimum-length sky130
devices, its own local clock inverter, 2 fF on q) in ``_netlists.dff_tb_deck``, giving the
energy per clock event (d constant) and the extra energy per output toggle, per corner. The
SAR's register architecture then fixes the counts per conversion (``sar_logic_events``).
"""

from __future__ import annotations

from ._netlists import dff_tb_deck, read_dff_energy

_CACHE: dict[str, tuple[float, float]] = {}


def dff_energy(process: str, vdd_v: float, temp_c: float, *, tclk_s: float = 4e-9
               ) -> tuple[float, float]:
    """(J per flip-flop clock event, J per q toggle) at one corner (cached per process).

    Raises:
        SimulationError: ngspice failed.
        RuntimeError: The toggle flip-flop did not toggle every clock (a broken cell).
    """
    from .comparator import shared_engine

    deck = dff_tb_deck(process, vdd_v, temp_c, tclk_s=tclk_s, cycles=6)
    if deck not in _CACHE:
        plot = shared_engine().simulate(deck)["tran1"]
        e_clk, e_tog, toggles = read_dff_energy(plot, vdd_v, tclk_s)
        if toggles != 4:
            raise RuntimeError(f"SAR logic testbench: the toggle flip-flop toggled {toggles} "
                               f"times in 4 clocks at process={process}, vdd_v={vdd_v}, "
                               f"temp_c={temp_c}")
        _CACHE[deck] = (e_clk, e_tog)
    return _CACHE[deck]


def sar_logic_events(bits: int) -> tuple[int, int]:
    """(flip-flop clock events, q toggles) per conversion of the SAR's logic.

    The ring counter has bits + 2 flip-flops and the bit register bits more, all clocked each
    of the bits + 2 cycles: (bits + 2)(2 bits + 2) clock events. Toggles: each ring flip-flop
    rises and falls once (2 (bits + 2)); each register bit is set at its trial, cleared with
    probability 1/2 at the next decision, and reset at sampling if it stayed set (1/2): 2 per
    bit on average (2 bits). Combinational gates (2 AND + 1 OR per bit) are not counted.
    """
    return (bits + 2) * (2 * bits + 2), 2 * (bits + 2) + 2 * bits


def sar_logic_energy_j(bits: int, e_clock_j: float, e_toggle_j: float) -> float:
    """SAR logic energy per conversion from the flip-flop's SPICE energies, J."""
    n_clk, n_tog = sar_logic_events(bits)
    return n_clk * e_clock_j + n_tog * e_toggle_j
