"""PNG plots of an ADC lookup file (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_plots(lookup: str | Path, out_dir: str | Path) -> list[Path]:
    """Transfer curve, DNL/INL, ENOB vs bits, energy vs bits (with 2^ENOB), offset histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from characterization.lookup import read_lookup

    lf = read_lookup(lookup)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    th = lf["adc/thresholds"]
    procs = list(th.coords["process"])
    bits = th.coords["bits"]
    paths = []
    sel = {"vdd_v": th.coords["vdd_v"][-1], "temp_c": th.coords["temp_c"][len(
        th.coords["temp_c"]) // 2]}  # highest vdd, middle temperature
    where = f"vdd_v = {float(sel['vdd_v']):g} V, temp_c = {float(sel['temp_c']):g} C"
    b6 = int(bits[min(len(bits) - 1, int(np.searchsorted(bits, 6)))])
    p0 = "tt" if "tt" in procs else procs[0]
    # transfer curve + DNL/INL of instance 0
    b4 = int(bits[min(len(bits) - 1, int(np.searchsorted(bits, 4)))])
    t = lf["adc/thresholds"].sel(process=p0, bits=b4, **sel).data[0]
    dnl = lf["adc/dnl"].sel(process=p0, bits=b6, **sel).data
    inl = lf["adc/inl"].sel(process=p0, bits=b6, **sel).data
    t = t[np.isfinite(t)]
    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    x = np.concatenate([[t[0] - 1], t, [t[-1] + 1]])
    ax[0].step(x, np.concatenate([[0], np.arange(1, t.size + 1), [t.size]]), where="post",
               label="instance 0")
    k = np.arange(1, 2**b4)
    ax[0].step(np.concatenate([[t[0] - 1], k, [k[-1] + 1]]),
               np.concatenate([[0], k, [k[-1]]]), "k:", where="post", lw=0.9,
               label="ideal (transition k at k LSB)")
    ax[0].set(xlabel="input (LSB)", ylabel="code", title=f"transfer, {p0}, {b4} bits")
    ax[0].legend()
    for i in range(dnl.shape[0]):
        d, n = dnl[i][np.isfinite(dnl[i])], inl[i][np.isfinite(inl[i])]
        ax[1].plot(np.arange(1, d.size + 1), d, lw=0.8, label=f"instance {i}")
        ax[2].plot(np.arange(1, n.size + 1), n, lw=0.8)
    if dnl.shape[0] <= 8:
        ax[1].legend(fontsize=7)
    ax[1].set(xlabel="code", ylabel="DNL (LSB)", title=f"DNL, {b6} bits, all instances")
    ax[2].set(xlabel="transition k", ylabel="INL (LSB)", title=f"INL, {b6} bits, all instances")
    fig.suptitle(where, fontsize=9)
    fig.tight_layout()
    paths.append(out / "adc_transfer_dnl_inl.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    # ENOB and energy vs bits per corner
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    styles = [("o", "-"), ("s", "--"), ("^", "-."), ("v", ":"), ("D", "-")]
    for i, p in enumerate(procs):
        enob = lf["adc/enob"].sel(process=p, **sel).data
        e = lf["adc/energy_j"].sel(process=p, **sel).data
        mk, ls = styles[i % len(styles)]
        ax[0].plot(bits, enob, marker=mk, ls=ls, mfc="none", label=p)
        ax[1].semilogy(bits, e, marker=mk, ls=ls, mfc="none", label=p)
    ax[0].plot(bits, bits, "k:", label="ENOB = bits")
    ax[0].set(xlabel="bits", ylabel="ENOB (bits)", title="sine-fit ENOB (mean of instances)")
    ax[0].legend()
    e0 = lf["adc/energy_j"].sel(process=p0, **sel).data
    enob0 = lf["adc/enob"].sel(process=p0, **sel).data
    ref = e0[-1] * 2.0 ** (enob0 - enob0[-1])
    ax[1].semilogy(bits, e0[-1] * 2.0 ** (bits - bits[-1]), "k--", lw=0.9,
                   label=f"2^bits through {p0} at {bits[-1]} bits")
    ax[1].semilogy(bits, ref, "k:", label=f"2^ENOB through {p0} at {bits[-1]} bits")
    ax[1].set(xlabel="bits", ylabel="energy per conversion (J)", title="energy")
    ax[1].legend()
    fig.suptitle(where, fontsize=9)
    fig.tight_layout()
    paths.append(out / "adc_enob_energy_vs_bits.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    # comparator offset histogram
    off = lf["adc/records/cmp_offset_v"]
    fig, ax = plt.subplots(figsize=(6, 4))
    allv = off.data[np.isfinite(off.data)] * 1e3
    edges = np.linspace(allv.min(), allv.max(), 13) if allv.size > 1 else 12
    for p in procs:
        v = off.sel(process=p, **sel).data
        ax.hist(v[np.isfinite(v)] * 1e3, bins=edges, histtype="step", lw=1.5,
                label=f"{p} (std {np.nanstd(v) * 1e3:.1f} mV)")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="comparator offset (mV)", ylabel="instances",
           title=f"StrongARM offset, SPICE Monte Carlo\n{where}")
    ax.legend()
    fig.tight_layout()
    paths.append(out / "adc_comparator_offset_hist.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths
