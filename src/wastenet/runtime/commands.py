"""``wastenet run`` (the bin) and ``wastenet latency`` (equations 1-2 against a run)."""

from __future__ import annotations

import argparse
import sys

from wastenet.analysis.latency import PAPER_IPS, PAPER_N, PAPER_SERVO_DELAY_S
from wastenet.errors import ExitCode
from wastenet.runtime.app import BinOptions

BIN = BinOptions()  # the bin's defaults, defined once there


def register(subparsers, formatter_class) -> None:
    run = subparsers.add_parser(
        "run",
        help="run the smart bin: camera -> vote -> servo doors",
        description="Run the bin loop. With no arguments: the bundled model on the bundled "
        "TrashNet samples, replayed as a camera would see them, with simulated servos.",
        formatter_class=formatter_class,
        epilog="examples:\n  wastenet run\n"
        "  wastenet run --source csi://0 --model model.onnx --actuator pca9685://0/0x40\n"
        "  wastenet run --source 'scene/?fps=20&hold=12&gap=6' --vote 10 --threshold 0.7\n"
        "  wastenet run --source rtsp://cam.local/stream --mjpeg-port 8080 --store samples/\n"
        "exit codes: 0 done (the source ended, --max-frames, SIGINT/SIGTERM), 2 bad input, "
        "3 source lost (a camera failed every reconnect), 4 stuck (the watchdog ended a loop "
        "stuck in the engine, a driver or a hook)",
    )
    run.add_argument(
        "--source",
        help="csi://N[?width=&height=&framerate=&flip-method=], /dev/videoN, v4l2://N, "
        "rtsp://..., a video (clip.mp4 or file://clip.mp4) or an image folder "
        "(?fps=&hold=&gap=&loop=&size=HxW&background=); default: bundled samples",
    )
    run.add_argument(
        "--model",
        help="model artifact (.onnx, ...), or a model folder (its fastest verified engine, "
        "as for the bundled one, e.g. the `current` of `wastenet update pull`); default: "
        "the bundled one",
    )
    run.add_argument(
        "--actuator",
        default=BIN.actuator,
        help="sim://[?delay=S&record=F], log:// or pca9685://[BUS][/ADDR] (a BUS number "
        "needs adafruit-extended-bus; none: the board's default bus)",
    )
    run.add_argument("--doors", help="class -> door YAML; default: the paper's three doors")
    run.add_argument("--vote", type=int, default=BIN.vote, help="majority-vote window N (>= 1)")
    run.add_argument(
        "--threshold",
        type=float,
        default=BIN.threshold,
        help="minimum top probability of a vote, in [0, 1] (default: the model card's, 0.7 "
        "for the bundled model)",
    )
    run.add_argument(
        "--min-share",
        type=float,
        default=BIN.min_share,
        help="winner needs more than this share of N",
    )
    run.add_argument("--no-gate", action="store_true", help="infer every frame (no presence gate)")
    run.add_argument(
        "--gate-threshold",
        type=float,
        default=BIN.gate_threshold,
        help="changed-pixel share meaning 'present', in (0, 1)",
    )
    run.add_argument(
        "--crop-to-object",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="classify a crop around what the presence gate saw change (default: the door "
        "map's crop_to_object)",
    )
    run.add_argument(
        "--headless", action="store_true", default=None, help="no window (default when no display)"
    )
    run.add_argument(
        "--mjpeg-port", type=int, help="serve the overlay as MJPEG on 127.0.0.1:PORT (1..65535)"
    )
    run.add_argument("--store", help="sample store folder for retraining (off when not given)")
    run.add_argument(
        "--store-policy",
        default=BIN.store_policy,
        help="all, uncertain (to label), every:K, or uncertain+every:K (to label and to self-train)",
    )
    run.add_argument(
        "--store-quota-mb", type=float, help="evict oldest samples beyond this size (> 0)"
    )
    run.add_argument("--run-dir", help="where timings go (default runs/bin/<time>)")
    run.add_argument("--max-frames", type=int, help="stop after this many frames")
    run.add_argument(
        "--stuck-s",
        type=float,
        default=BIN.stuck_s,
        help="the watchdog: a stage (inference, a servo command, a hook) running this long, "
        "or a run not stopped 5 s after SIGINT/SIGTERM, ends the bin with exit code 4",
    )
    run.set_defaults(func=_run)

    lat = subparsers.add_parser(
        "latency",
        help="latency calculator (paper eq. 1-2) and a run's measured latency",
        description="Print equations 1 and 2 of the paper for N and IPS; with --run, compare "
        "them with the capture-to-actuation times the bin measured in that run.",
        formatter_class=formatter_class,
        epilog="examples:\n  wastenet latency --n 10 --ips 17\n  wastenet latency --run runs/bin/20250101-120000",
    )
    lat.add_argument("--n", type=int, default=PAPER_N, help="vote window N")
    lat.add_argument("--ips", type=float, default=PAPER_IPS, help="inferences per second")
    lat.add_argument(
        "--servo", type=float, default=PAPER_SERVO_DELAY_S, help="servo delay in seconds"
    )
    lat.add_argument("--run", help="a bin run folder to compare with")
    lat.set_defaults(func=_latency)


def _run(args: argparse.Namespace) -> int:
    from wastenet.runtime.app import run_bin

    opts = BinOptions(
        source=args.source,
        model=args.model,
        actuator=args.actuator,
        doors=args.doors,
        vote=args.vote,
        threshold=args.threshold,
        min_share=args.min_share,
        gate=not args.no_gate,
        gate_threshold=args.gate_threshold,
        crop_to_object=args.crop_to_object,
        headless=args.headless,
        mjpeg_port=args.mjpeg_port,
        store=args.store,
        store_policy=args.store_policy,
        store_quota_mb=args.store_quota_mb,
        run_dir=args.run_dir,
        max_frames=args.max_frames,
        stuck_s=args.stuck_s,
    )
    summary = run_bin(opts)
    if summary.source_lost:  # non-zero, so a supervisor restarts the bin
        print(
            f"wastenet: error: source lost: {summary.source_lost} "
            f"(exit code {ExitCode.SOURCE_LOST:d})",
            file=sys.stderr,
        )
        return ExitCode.SOURCE_LOST
    return ExitCode.OK


def _latency(args: argparse.Namespace) -> int:
    from wastenet.analysis import latency as lat

    ns = sorted({2, 4, 6, 8, 10, 16, 20, args.n})
    print(f"Equation 2 at {args.ips:g} IPS, servo {args.servo:g} s:")
    print("| N | queue s | servo s | total s |\n| ---: | ---: | ---: | ---: |")
    for row in lat.calculator_table(ns, args.ips, args.servo):
        mark = " *" if row["n"] == args.n else ""
        print(
            f"| {row['n']}{mark} | {row['queue_s']:.3f} | {row['servo_s']:.3f} | {row['total_s']:.3f} |"
        )
    print(
        f"Equation 1 (paper: T_cts={lat.PAPER_TOTAL_S} s at N={lat.PAPER_N}, {lat.PAPER_IPS:g} IPS): "
        f"servo {lat.servo_latency(lat.PAPER_TOTAL_S):.3f} s; N*={args.n} at {args.ips:g} IPS -> "
        f"{lat.equation1(args.n, args.ips):.3f} s"
    )
    if args.run:
        run = lat.load_run(args.run)
        c = lat.compare_run(run, n=None, ips=None)
        print(
            f"\nRun {args.run}: {c['actuations']} actuations, N={c['n']}, {c['ips']:.1f} inferences/s"
        )
        if lat.skipped_note(run):
            print(lat.skipped_note(run))
        print("| | measured s | equation s |\n| --- | ---: | ---: |")
        print(f"| queue | {c['measured_queue_s']:.3f} | {c['eq1_queue_s']:.3f} |")
        print(f"| total | {c['measured_total_s']:.3f} | {c['eq2_total_s']:.3f} |")
        diff = abs(c["measured_queue_s"] - c["eq1_queue_s"])
        print(f"queue difference {diff * 1000:.0f} ms = {diff / c['frame_time_s']:.2f} frame times")
    return 0
