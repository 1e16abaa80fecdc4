"""``wastenet power``: tegrastats logs, the paper's power protocol, RAPL, efficiency, battery."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from wastenet.errors import WasteNetError

EPILOG = """examples:
  wastenet power battery --capacity-wh 50 --items-per-hour 60 --awake-s 5 --idle-w 2 --active-w 5
  wastenet power efficiency                  # the paper's section 5.5 figures, recomputed
  wastenet power efficiency --ips 17 --watts 5
  wastenet power parse tegrastats.log --states states.json --settle-s 2
  wastenet power parse tegrastats.log --run runs/bin/20250101-120000
  wastenet power protocol --model model.onnx --tegrastats-log runs/power/tegrastats.log
  wastenet power rapl --model model.onnx --seconds 10 --json runs/power/rapl.json

exit code 2 with a reason where the hardware cannot be read ('tegrastats not found: this
is not a Jetson', 'RAPL not available on this machine (...)'): never an invented number."""


def register(subparsers, formatter_class=argparse.HelpFormatter) -> None:
    p = subparsers.add_parser(
        "power",
        help="board power: tegrastats logs, the paper's protocol, RAPL, battery life",
        description="Power per model state (paper section 4.4.2, figures 14-15), energy per "
        "inference (J = W / IPS), inferences per second per watt and battery life.",
        formatter_class=formatter_class,
        epilog=EPILOG,
    )
    p.set_defaults(func=lambda args: _help(p))
    sub = p.add_subparsers(dest="power_command", metavar="SUBCOMMAND")
    _register_battery(sub, formatter_class)
    _register_efficiency(sub, formatter_class)
    _register_parse(sub, formatter_class)
    _register_protocol(sub, formatter_class)
    _register_rapl(sub, formatter_class)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def _register_battery(sub, formatter_class) -> None:
    b = sub.add_parser(
        "battery",
        help="hours on a battery for a duty cycle",
        description="Mean power = (awake s x active W + rest of the hour x idle W) / 3600 s; "
        "hours = capacity / mean power.",
        formatter_class=formatter_class,
    )
    b.add_argument("--capacity-wh", type=float, required=True, help="battery capacity, Wh")
    b.add_argument("--items-per-hour", type=float, default=0.0, help="items thrown in per hour")
    b.add_argument("--awake-s", type=float, default=0.0, help="seconds awake (inferring) per item")
    b.add_argument("--idle-w", type=float, required=True, help="power between items, W")
    b.add_argument("--active-w", type=float, required=True, help="power while awake, W")
    b.set_defaults(func=_battery)


def _register_efficiency(sub, formatter_class) -> None:
    e = sub.add_parser(
        "efficiency",
        help="IPS per watt and J per inference (no options: the paper's figures)",
        formatter_class=formatter_class,
    )
    e.add_argument("--ips", type=float, help="inferences per second")
    e.add_argument("--watts", type=float, help="input power while inferring, W")
    e.set_defaults(func=_efficiency)


def _register_parse(sub, formatter_class) -> None:
    p = sub.add_parser(
        "parse",
        help="power from a tegrastats log, per state or over a bin run",
        description="Reads POM_5V_IN (Nano) or VDD_IN (Xavier/Orin) lines; malformed lines "
        "are counted and skipped.",
        formatter_class=formatter_class,
    )
    p.add_argument("log", help="tegrastats output, one line per sample")
    p.add_argument("--states", help="states.json with wall-clock start/end of each state")
    p.add_argument("--settle-s", type=float, default=0.0, help="skip this much of each state")
    p.add_argument("--run", help="a bin run folder (runs/bin/<time>) to line the samples up with")
    p.add_argument(
        "--clock-offset",
        type=float,
        help="the run's wall clock minus its perf_counter, s (default: run.json's clock; "
        "for a run without one, timings.jsonl's modification time, approximate)",
    )
    p.add_argument("--json", help="also write the result to this JSON file")
    p.set_defaults(func=_parse)


def _register_protocol(sub, formatter_class) -> None:
    p = sub.add_parser(
        "protocol",
        help="on a Jetson: record idle / model loaded / inferring power",
        description="Starts tegrastats (timestamped, to --tegrastats-log), holds each state "
        "for its time, writes states.json and prints power per state.",
        formatter_class=formatter_class,
    )
    p.add_argument("--model", required=True, help="model artifact (load_engine opens it)")
    p.add_argument("--tegrastats-log", required=True, help="where tegrastats' lines go")
    p.add_argument("--states", help="states.json to write (default: next to the log)")
    p.add_argument("--idle-s", type=float, default=30.0, help="seconds idle with no model")
    p.add_argument("--loaded-s", type=float, default=30.0, help="seconds with the model loaded")
    p.add_argument("--infer-s", type=float, default=30.0, help="seconds inferring")
    p.add_argument("--interval-ms", type=int, default=500, help="tegrastats sample interval")
    p.add_argument("--settle-s", type=float, default=2.0, help="skip this much of each state")
    p.add_argument("--json", help="power per state as JSON (default: power.json beside the log)")
    p.set_defaults(func=_protocol)


def _register_rapl(sub, formatter_class) -> None:
    r = sub.add_parser(
        "rapl",
        help="on x86: CPU package energy (RAPL) around an inference loop",
        formatter_class=formatter_class,
    )
    r.add_argument("--model", required=True, help="model artifact (load_engine opens it)")
    r.add_argument("--seconds", type=float, default=10.0, help="seconds of inference")
    r.add_argument("--idle-s", type=float, default=0.0, help="measure idle power first, s")
    r.add_argument("--json", help="also write the result to this JSON file")
    r.add_argument("--sysfs-root", default="/sys/class/powercap", help=argparse.SUPPRESS)
    r.set_defaults(func=_rapl)


def _battery(args: argparse.Namespace) -> int:
    from wastenet.analysis.power import battery_life

    r = battery_life(
        args.capacity_wh, args.items_per_hour, args.awake_s, args.idle_w, args.active_w
    )
    note = " (always awake: items x awake-s fill the hour)" if r["saturated"] else ""
    print(
        f"Duty cycle: {args.items_per_hour:g} items/h x {args.awake_s:g} s awake = "
        f"{r['awake_s_per_hour']:g} s/h awake ({r['awake_share']:.1%}){note}"
    )
    print(
        f"Mean power: {r['mean_w']:.3f} W (active {args.active_w:g} W, idle {args.idle_w:g} W), "
        f"{r['wh_per_day']:.1f} Wh/day"
    )
    print(f"Battery life: {r['hours']:.1f} h ({r['days']:.2f} days) on {args.capacity_wh:g} Wh")
    return 0


def _efficiency(args: argparse.Namespace) -> int:
    from wastenet.analysis import power as pw

    if args.ips is not None or args.watts is not None:
        if args.ips is None or args.watts is None:
            raise WasteNetError("give both --ips and --watts (or neither, for the paper's)")
        print(
            f"{pw.ips_per_watt(args.ips, args.watts):.3f} inferences/s per W, "
            f"{pw.joules_per_inference(args.watts, args.ips):.3f} J per inference"
        )
        return 0
    f = pw.paper_figures()
    s = f["stated"]
    print("Paper section 5.5, recomputed from the IPS and power pairs its text gives:")
    print(
        "| profile | IPS | inferring W | IPS/W | J/inference |\n| --- | ---: | ---: | ---: | ---: |"
    )
    for key, p in (("maxn", pw.PAPER_MAXN), ("5w", pw.PAPER_5W)):
        print(
            f"| {p['profile']} | {p['ips']:g} | {p['inferring_w']:g} | "
            f"{f[key + '_ips_per_w']:.2f} | {f[key + '_j_per_inference']:.3f} |"
        )
    print(
        f"MAXN efficiency: {f['maxn_ips_per_w']:.2f} computed, {s['maxn_ips_per_w']:g} stated; "
        f"gap to 5 W: {f['gap_ips_per_w']:.2f} computed, {s['gap_ips_per_w']:g} stated"
    )
    print(
        f"25 Wh battery: idle at {pw.PAPER_IDLE_LOADED_W:g} W {f['idle_hours_on_25wh']:.1f} h "
        f"(stated {s['idle_hours_on_25wh']:g}); inferring at 5 W profile "
        f"{f['inferring_5w_hours_on_25wh']:.1f} h (stated {s['inferring_5w_hours']:g}); "
        f"a month idle {f['idle_wh_per_30_days']:g} Wh (stated ~{s['idle_wh_per_month']:g})"
    )
    return 0


def _fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def print_states(rows: list[dict]) -> None:
    print(
        "| state | s | samples | mean W | median W | IPS | J/inference | IPS/W |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    for r in rows:
        print(
            f"| {r['name']} | {r['duration_s']:.1f} | {r['samples']} | {_fmt(r['mean_w'])} | "
            f"{_fmt(r['median_w'])} | {_fmt(r.get('ips'), '.2f')} | "
            f"{_fmt(r.get('j_per_inference'))} | {_fmt(r.get('ips_per_w'), '.2f')} |"
        )
    for r in rows:
        if "marginal_j_per_inference" in r:
            print(
                f"{r['name']}: {r['marginal_j_per_inference']:.3f} J per inference above 'loaded'"
            )
        if r["samples"] == 0:
            print(f"warning: no power sample inside state {r['name']!r}")


def _print_run(r: dict) -> None:
    print(
        f"Run: {r['duration_s']:.1f} s, {r['frames']} frames, {r['inferences']} inferences; "
        f"clock from {r['anchor']}"
    )
    print("| | samples | mean W | median W |\n| --- | ---: | ---: | ---: |")
    for key in ("all", "inferring", "waiting"):
        s = r[key]
        print(f"| {key} | {s['samples']} | {_fmt(s['mean_w'])} | {_fmt(s['median_w'])} |")
    print(f"energy {r['energy_j']:.1f} J", end="")
    if "j_per_inference" in r:
        print(
            f", {r['j_per_inference']:.3f} J per inference, {r['ips']:.2f} IPS, "
            f"{r['ips_per_w']:.2f} IPS/W",
            end="",
        )
    print()


def _parse(args: argparse.Namespace) -> int:
    from wastenet.analysis import power as pw

    log = pw.read_tegrastats(args.log)
    out: dict = {"log": args.log, "samples": len(log.samples), "skipped": log.skipped}
    rails = sorted({s.rail for s in log.samples})
    print(f"{args.log}: {len(log.samples)} samples ({', '.join(rails) or 'no input rail'})")
    if pw.skipped_note(log):
        print(pw.skipped_note(log))
    if not log.samples:
        raise WasteNetError(f"{args.log}: no POM_5V_IN or VDD_IN reading in any line")
    out["all"] = pw.summarize([s.watts for s in log.samples])
    a = out["all"]
    print(f"all samples: mean {a['mean_w']:.3f} W, median {a['median_w']:.3f} W")
    if args.states:
        out["states"] = pw.power_per_state(log, pw.load_states(args.states), args.settle_s)
        print_states(out["states"])
    if args.run:
        out["run"] = pw.align_run(log, args.run, args.clock_offset)
        _print_run(out["run"])
    if args.json:
        _write_json(args.json, out)
    return 0


def _write_json(path: str, result: dict) -> None:
    """The result with its provenance (command, date, machine), for ``wastenet report``."""
    from wastenet.provenance import provenance

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    record = {**result, "provenance": provenance()}
    Path(path).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")


def _protocol(args: argparse.Namespace) -> int:
    from wastenet.analysis import power_protocol as proto

    proto.find_tegrastats()  # before anything else: exit 2 off a Jetson
    states = args.states or str(Path(args.tegrastats_log).with_name("states.json"))
    durations = {"idle": args.idle_s, "loaded": args.loaded_s, "inferring": args.infer_s}
    result = proto.run_protocol(
        args.model, args.tegrastats_log, states, durations, args.interval_ms, args.settle_s
    )
    mode = result["doc"]["power_mode"]
    print(f"tegrastats: {result['lines']} lines in {args.tegrastats_log}; states in {states}")
    print(f"power mode: {mode or 'unknown (no nvpmodel)'}")
    if result["log"].skipped:
        print(f"skipped {result['log'].skipped} malformed tegrastats line(s)")
    print_states(result["rows"])
    out = args.json or str(Path(args.tegrastats_log).with_name("power.json"))
    _write_json(out, {"power_mode": mode, "load_s": result["doc"].get("load_s"),
                      "states": result["rows"], "skipped": result["log"].skipped})  # fmt: skip
    print(f"power per state: {out}")
    return 0


def _rapl(args: argparse.Namespace) -> int:
    from wastenet.analysis import power_rapl as rapl

    meter = rapl.RaplMeter(args.sysfs_root)  # RaplUnavailable (exit 2) before loading a model
    if args.seconds <= 0 or args.idle_s < 0:
        raise WasteNetError("--seconds must be > 0 and --idle-s >= 0")
    import numpy as np

    from wastenet.accelerate import load_engine

    with load_engine(args.model) as engine:
        h, w = engine.meta.height, engine.meta.width
        batch = np.random.default_rng(0).standard_normal((1, 3, h, w)).astype(np.float32)
        for _ in range(5):
            engine.predict(batch)
        r = rapl.measure_loop(lambda: engine.predict(batch), args.seconds, meter, args.idle_s)
    print(f"RAPL zones summed: {', '.join(r['total_zones'])} (CPU packages, not the whole machine)")
    for zone, joules in r["zones"].items():
        print(f"  {zone}: {joules:.2f} J")
    print(
        f"{r['inferences']} inferences in {r['seconds']:.1f} s: {r['energy_j']:.2f} J, "
        f"{r['mean_w']:.2f} W"
    )
    if r["inferences"]:
        print(
            f"{r['ips']:.2f} IPS, {r['j_per_inference']:.4f} J per inference, "
            f"{_fmt(r['ips_per_w'], '.2f')} IPS/W"
        )
    if r.get("marginal_j_per_inference") is not None:
        print(
            f"idle {r['idle_w']:.2f} W; {r['marginal_j_per_inference']:.4f} J per inference above idle"
        )
    if args.json:
        _write_json(args.json, r)
    return 0
