"""``wastenet power``: tegrastats lines of the Nano and of Orin, per-state power, energy per
inference, IPS per watt, battery life, RAPL on a fake sysfs tree (with wraparound), and
the paths where the hardware is absent (exit 2, no traceback, no number)."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from wastenet.analysis import power as pw
from wastenet.analysis import power_protocol as proto
from wastenet.analysis import power_rapl as rapl
from wastenet.cli import main
from wastenet.errors import WasteNetError

# Real lines: Jetson Nano (JetPack 4, no timestamp, milliwatts without a unit) ...
NANO_IDLE = (
    "RAM 1894/3964MB (lfb 4x1MB) SWAP 0/1982MB (cached 0MB) CPU [12%@1479,9%@1479,8%@1479,"
    "6%@1479] EMC_FREQ 0% GR3D_FREQ 0% PLL@31C CPU@34C PMIC@100C GPU@32.5C AO@41C "
    "thermal@33.25C POM_5V_IN 2086/2086 POM_5V_GPU 0/0 POM_5V_CPU 416/416"
)
NANO_IRAM = (
    "RAM 1655/3956MB (lfb 311x4MB) SWAP 0/1978MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
    "CPU [14%@204,14%@204,10%@204,11%@204] EMC_FREQ 3%@1600 GR3D_FREQ 16%@76 APE 25 PLL@36C "
    "CPU@39C iwlwifi@44C PMIC@50C GPU@37C AO@47C thermal@38C POM_5V_IN 2247/2189 "
    "POM_5V_GPU 78/78 POM_5V_CPU 275/275"
)
NANO_LOADED_GPU_FIRST = (  # the GPU rail printed before the input rail
    "RAM 2020/3964MB (lfb 19x4MB) SWAP 43/1982MB (cached 1MB) CPU [100%@1479,100%@1479,"
    "100%@1479,100%@1479] EMC_FREQ 0% GR3D_FREQ 99% PLL@42C CPU@48C PMIC@100C GPU@46C "
    "AO@54C thermal@48C POM_5V_GPU 8633/8742 POM_5V_IN 2956/3086 POM_5V_CPU 3148/3134"
)
# ... and Orin (JetPack 5/6: a leading timestamp, mW units).
ORIN = (
    "08-23-2025 13:57:46 RAM 3595/7607MB (lfb 1x1MB) SWAP 11/3804MB (cached 0MB) "
    "CPU [1%@729,off,3%@729,4%@729,5%@729,6%@729] EMC_FREQ 2%@2133 GR3D_FREQ 7%@[306] "
    "cpu@51C soc2@50.562C soc0@51.031C gpu@50.5C tj@51C soc1@50C "
    "VDD_IN 5832mW/5852mW VDD_CPU_GPU_CV 1307mW/1327mW VDD_SOC 1468mW/1468mW"
)
ORIN_NANO = (
    "05-05-2025 06:05:39 RAM 2639/7620MB (lfb 9x4MB) SWAP 0/3810MB (cached 0MB) "
    "CPU [1%@729,4%@729,8%@729,4%@729,5%@729,4%@729] GR3D_FREQ 0% cpu@44.156C soc2@43.781C "
    "soc0@44.687C gpu@45.968C tj@45.968C soc1@45.312C "
    "VDD_IN 5263mW/5263mW VDD_CPU_GPU_CV 717mW/717mW VDD_SOC 1794mW/1794mW"
)
T0 = datetime(2025, 5, 5, 6, 0, 0).timestamp()  # local time, as tegrastats stamps it


def nano_line(mw: int) -> str:
    return NANO_IDLE.replace("POM_5V_IN 2086/2086", f"POM_5V_IN {mw}/{mw}")


def stamped(t: float, mw: int) -> str:
    return f"{datetime.fromtimestamp(t).strftime('%m-%d-%Y %H:%M:%S')} {nano_line(mw)}"


def cli(capsys, *args):
    code = main(["power", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


# --- tegrastats lines ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, watts, avg, rail",
    [
        (NANO_IDLE, 2.086, 2.086, "POM_5V_IN"),
        (NANO_IRAM, 2.247, 2.189, "POM_5V_IN"),
        (NANO_LOADED_GPU_FIRST, 2.956, 3.086, "POM_5V_IN"),
        (ORIN, 5.832, 5.852, "VDD_IN"),
        (ORIN_NANO, 5.263, 5.263, "VDD_IN"),
    ],
)
def test_both_formats_read_the_input_rail(line, watts, avg, rail):
    s = pw.parse_line(line)
    assert (s.watts, s.avg_watts, s.rail) == (pytest.approx(watts), pytest.approx(avg), rail)


def test_timestamps_are_local_wall_clock():
    assert pw.parse_line(NANO_IDLE).t is None
    assert pw.parse_line(ORIN).t == datetime(2025, 8, 23, 13, 57, 46).timestamp()
    t = T0 + 12.345
    assert pw.parse_stamp(pw.format_stamp(t)) == pytest.approx(t, abs=1e-3)
    assert pw.parse_line(f"{pw.format_stamp(t)} {NANO_IDLE}").t == pytest.approx(t, abs=1e-3)


def test_malformed_lines_are_counted_and_skipped(tmp_path):
    lines = [
        ORIN,
        "",  # blank: not a sample, not malformed
        NANO_IDLE[:60],  # cut off before the rails
        "13-45-2025 99:00:00 " + NANO_IDLE,  # impossible date
        "POM_5V_INX 1/1 VDD_IN_SYS 2/2 VDD_IN abc/def",  # look-alikes only
        "\x00\xff garbage",
        NANO_IRAM,
    ]
    log = pw.parse_lines(lines)
    assert [s.line for s in log.samples] == [1, 7]
    assert (log.skipped, log.skipped_lines) == (4, [3, 4, 5, 6])
    assert "skipped 4 malformed line(s) (line 3, 4, 5, 6)" in pw.skipped_note(log)
    path = tmp_path / "t.log"
    path.write_bytes("\n".join(lines).encode() + b"\n\xfe\xfd\n")
    assert pw.read_tegrastats(path).skipped == 5
    with pytest.raises(WasteNetError, match="cannot read"):
        pw.read_tegrastats(tmp_path / "absent.log")


# --- states --------------------------------------------------------------------------------


def protocol_log(tmp_path):
    """10 s idle (2.0 W), 10 s loaded (2.2 W), 10 s inferring (5.0 W), one sample a second."""
    lines = [stamped(T0 + i, 2000 if i < 10 else 2200 if i < 20 else 5000) for i in range(30)]
    lines.insert(15, "tegrastats: some warning")
    log_path = tmp_path / "tegrastats.log"
    log_path.write_text("\n".join(lines) + "\n")
    states = {
        "states": [
            {"name": "idle", "start": T0, "end": T0 + 10},
            {"name": "loaded", "start": T0 + 10, "end": T0 + 20},
            {"name": "inferring", "start": T0 + 20, "end": T0 + 30, "inferences": 170},
        ]
    }
    states_path = tmp_path / "states.json"
    states_path.write_text(json.dumps(states))
    return log_path, states_path


def test_power_per_state_by_timestamp(tmp_path):
    log_path, states_path = protocol_log(tmp_path)
    log = pw.read_tegrastats(log_path)
    assert log.skipped == 1
    rows = pw.power_per_state(log, pw.load_states(states_path))
    idle, loaded, infer = rows
    assert (idle["samples"], idle["mean_w"], idle["median_w"]) == (10, 2.0, 2.0)
    assert loaded["mean_w"] == pytest.approx(2.2)
    assert infer["ips"] == 17.0
    assert infer["mean_w"] == 5.0
    assert infer["j_per_inference"] == pytest.approx(5 / 17)
    assert infer["ips_per_w"] == pytest.approx(3.4)
    assert infer["marginal_j_per_inference"] == pytest.approx((5.0 - 2.2) / 17)
    settled = pw.power_per_state(log, pw.load_states(states_path), settle_s=2)
    assert [r["samples"] for r in settled] == [8, 8, 8]


def test_states_need_timestamps_and_a_valid_file(tmp_path):
    states = [pw.State("idle", T0, T0 + 1)]
    with pytest.raises(WasteNetError, match="no timestamps"):
        pw.power_per_state(pw.parse_lines([NANO_IDLE]), states)
    for bad in ({}, {"states": []}, {"states": [{"name": "idle", "start": 2, "end": 1}]},
                {"states": [{"name": "idle", "start": "x", "end": 1}]}):  # fmt: skip
        with pytest.raises(WasteNetError, match="states.json"):
            pw.parse_states(bad)
    (tmp_path / "s.json").write_text("{not json")
    with pytest.raises(WasteNetError, match="not JSON"):
        pw.load_states(tmp_path / "s.json")


def test_parse_command(tmp_path, capsys):
    log_path, states_path = protocol_log(tmp_path)
    out_json = tmp_path / "out.json"
    code, out, _ = cli(
        capsys, "parse", str(log_path), "--states", str(states_path), "--json", str(out_json)
    )
    assert code == 0
    assert "30 samples (POM_5V_IN)" in out and "skipped 1 malformed line(s)" in out
    assert "| inferring | 10.0 | 10 | 5.000 | 5.000 | 17.00 | 0.294 | 3.40 |" in out
    assert json.loads(out_json.read_text())["states"][0]["mean_w"] == 2.0
    (tmp_path / "empty.log").write_text("garbage\n")
    code, _, err = cli(capsys, "parse", str(tmp_path / "empty.log"))
    assert code == 2 and "no POM_5V_IN or VDD_IN reading" in err


# --- a bin run's log -------------------------------------------------------------------------


def write_run(run_dir, perf0=500.0):
    """Frames at 10 fps for 10 s; the bin inferred (present) in the second half only."""
    run_dir.mkdir()
    lines = [
        json.dumps({"i": i, "t": perf0 + i / 10, "present": i >= 50, "label": None})
        for i in range(101)
    ]
    lines.insert(3, "{broken")
    (run_dir / "timings.jsonl").write_text("\n".join(lines) + "\n")
    return perf0


def test_align_with_the_bin_run_log(tmp_path):
    perf0 = write_run(tmp_path / "run")
    offset = T0 - perf0  # the run's first frame at T0 on the wall clock
    log = pw.parse_lines([stamped(T0 + i, 2000 if i < 5 else 4000) for i in range(-3, 14)])
    r = pw.align_run(log, tmp_path / "run", offset_s=offset)
    assert (r["frames"], r["inferences"], r["skipped_lines"]) == (101, 51, 1)
    assert r["all"]["samples"] == 11  # stamped T0 .. T0 + 10
    assert r["waiting"] == pw.summarize([2.0] * 5)
    assert r["inferring"] == pw.summarize([4.0] * 6)
    assert r["energy_j"] == pytest.approx((5 * 2 + 6 * 4) / 11 * 10)
    assert r["j_per_inference"] == pytest.approx(r["energy_j"] / 51)
    # Without an offset the file's modification time stands for the last frame.
    os.utime(tmp_path / "run" / "timings.jsonl", (T0 + 10, T0 + 10))
    assert pw.align_run(log, tmp_path / "run")["inferring"] == r["inferring"]
    with pytest.raises(WasteNetError, match="no power sample falls inside the run"):
        pw.align_run(log, tmp_path / "run", offset_s=offset + 3600)


def test_align_takes_the_clock_the_bin_recorded_in_run_json(tmp_path):
    perf0 = write_run(tmp_path / "run")
    utc = datetime.fromtimestamp(T0, timezone.utc).isoformat().replace("+00:00", "Z")
    clock = {"monotonic": "time.perf_counter", "monotonic_s": perf0, "epoch_s": T0,
             "utc": utc, "offset_s": T0 - perf0}  # fmt: skip
    (tmp_path / "run" / "run.json").write_text(json.dumps({"status": "done", "clock": clock}))
    os.utime(tmp_path / "run" / "timings.jsonl", (T0 + 900, T0 + 900))  # copied: times lost
    log = pw.parse_lines([stamped(T0 + i, 2000 if i < 5 else 4000) for i in range(-3, 14)])
    r = pw.align_run(log, tmp_path / "run")
    assert r["offset_s"] == T0 - perf0 and r["anchor"] == f"run.json clock (the run started {utc})"
    assert (r["all"]["samples"], r["inferring"]) == (11, pw.summarize([4.0] * 6))
    assert pw.align_run(log, tmp_path / "run", offset_s=T0 - perf0)["anchor"] == "--clock-offset"


# --- the arithmetic --------------------------------------------------------------------------


def test_energy_and_efficiency():
    assert pw.joules_per_inference(5.0, 17.0) == pytest.approx(0.2941, abs=1e-4)
    assert pw.ips_per_watt(24.0, 4.0) == 6.0
    for bad in (0, -1, float("nan")):
        with pytest.raises(WasteNetError):
            pw.ips_per_watt(bad, 5)
        with pytest.raises(WasteNetError):
            pw.joules_per_inference(5, bad)


def test_the_papers_figures_from_its_own_numbers():
    """Section 5.5: idle 2 W; inferring 5 W at 17 IPS (MAXN) and 3.5 W at 11 IPS (5 W mode)."""
    f = pw.paper_figures()
    assert f["maxn_ips_per_w"] == pytest.approx(3.4)  # 17 / 5
    assert f["5w_ips_per_w"] == pytest.approx(3.14, abs=0.005)  # 11 / 3.5
    assert f["idle_hours_on_25wh"] == pw.PAPER_STATED_IDLE_HOURS  # 25 Wh / 2 W = 12.5 h
    assert f["idle_wh_per_30_days"] == pytest.approx(pw.PAPER_STATED_MONTH_WH, rel=0.03)
    # Not reproduced: the text's 3.6 IPS/W (0.8 above the 5 W profile) and 26 h at 3.5 W
    # do not follow from the pairs it reports (17/5 = 3.4, gap 0.26; 25 Wh / 3.5 W = 7.1 h).
    # Pinned so that a change of the inputs or of the formula shows up here.
    assert round(f["maxn_ips_per_w"], 1) != pw.PAPER_STATED_MAXN_IPS_PER_W
    assert round(f["gap_ips_per_w"], 1) != pw.PAPER_STATED_GAP_IPS_PER_W
    assert round(f["inferring_5w_hours_on_25wh"]) != pw.PAPER_STATED_INFERRING_5W_HOURS


def test_battery_life_hand_computed(capsys):
    # 60 items/h x 5 s = 300 s at 5 W + 3300 s at 2 W = 8100 J per hour = 2.25 W mean;
    # 50 Wh / 2.25 W = 22.22 h.
    r = pw.battery_life(50, 60, 5, idle_w=2, active_w=5)
    assert (r["awake_s_per_hour"], r["mean_w"]) == (300, pytest.approx(2.25))
    assert r["hours"] == pytest.approx(22.222, abs=1e-3)
    assert not r["saturated"]
    assert pw.battery_life(25, 0, 0, 2, 5)["hours"] == 12.5  # the paper's idle case
    always = pw.battery_life(35, 3600, 2, 2, 3.5)  # more awake time than the hour holds
    assert always["saturated"] and always["hours"] == pytest.approx(10.0)
    with pytest.raises(WasteNetError):
        pw.battery_life(50, -1, 5, 2, 5)
    code, out, _ = cli(
        capsys, "battery", "--capacity-wh", "50", "--items-per-hour", "60", "--awake-s", "5",
        "--idle-w", "2", "--active-w", "5",
    )  # fmt: skip
    assert code == 0 and "Battery life: 22.2 h" in out and "Mean power: 2.250 W" in out
    code, out, _ = cli(capsys, "efficiency")
    assert code == 0 and "3.40 computed, 3.6 stated" in out
    code, _, err = cli(capsys, "efficiency", "--ips", "17")
    assert code == 2 and "give both --ips and --watts" in err


# --- RAPL ----------------------------------------------------------------------------------


def zone(root, key, name, energy, max_range=1_000_000):
    d = root / key
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{energy}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return d / "energy_uj"


def test_rapl_wraparound_on_a_fake_sysfs(tmp_path):
    assert rapl.wrap_delta(100, 400, 1000) == 300
    assert rapl.wrap_delta(900, 100, 1000) == 200
    package = zone(tmp_path, "intel-rapl:0", "package-0", 900_000)
    core = zone(tmp_path, "intel-rapl:0:0", "core", 10)
    zone(tmp_path, "intel-rapl:1", "psys", 0)
    meter = rapl.RaplMeter(tmp_path)
    assert [z.key for z in meter.totals] == ["intel-rapl:0"]  # not the core subzone, not psys
    meter.start()
    package.write_text("100000\n")  # wrapped: 0.1 J to the top, then 0.1 J
    core.write_text("50010\n")
    joules = meter.stop()
    assert joules["intel-rapl:0"] == pytest.approx(0.2)
    assert joules["intel-rapl:0:0"] == pytest.approx(0.05)
    assert meter.total_j() == pytest.approx(0.2)


def test_rapl_around_an_inference_loop(tmp_path):
    """Each fake inference costs 0.3 J and 0.25 s: the counter wraps every few of them."""
    package = zone(tmp_path, "intel-rapl:0", "package-0", 0)
    now = [0.0]

    def predict():
        package.write_text(f"{(int(package.read_text()) + 300_000) % 1_000_000}\n")
        now[0] += 0.25

    r = rapl.measure_loop(predict, 2.0, rapl.RaplMeter(tmp_path), poll_s=0, clock=lambda: now[0])
    assert (r["inferences"], r["seconds"]) == (8, 2.0)
    assert r["energy_j"] == pytest.approx(2.4)
    assert r["mean_w"] == pytest.approx(1.2)
    assert r["j_per_inference"] == pytest.approx(0.3)
    assert r["ips_per_w"] == pytest.approx(4 / 1.2)
    assert r["idle_w"] is None and "marginal_j_per_inference" not in r

    def idle(seconds):  # 0.5 W while idle
        package.write_text(f"{(int(package.read_text()) + int(seconds * 500_000)) % 1_000_000}\n")
        now[0] += seconds

    r = rapl.measure_loop(
        predict, 2.0, rapl.RaplMeter(tmp_path), idle_s=4.0, poll_s=0, clock=lambda: now[0],
        sleep=idle,
    )  # fmt: skip
    assert r["idle_w"] == pytest.approx(0.5)
    assert r["marginal_j_per_inference"] == pytest.approx((1.2 - 0.5) / 4)


def test_rapl_not_available(tmp_path, capsys):
    with pytest.raises(rapl.RaplUnavailable, match="no intel-rapl"):
        rapl.find_zones(tmp_path)
    d = zone(tmp_path, "intel-rapl:0", "package-0", 5).parent
    (d / "max_energy_range_uj").unlink()
    with pytest.raises(rapl.RaplUnavailable, match="cannot read"):
        rapl.find_zones(tmp_path)
    for root in (tmp_path / "absent", tmp_path):
        code, out, err = cli(
            capsys, "rapl", "--model", "m.onnx", "--seconds", "10", "--sysfs-root", str(root)
        )
        assert code == 2 and out == ""
        assert err.startswith("wastenet: error: RAPL not available on this machine (")


# --- the protocol on a Jetson ----------------------------------------------------------------


def test_protocol_off_a_jetson_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    code, out, err = cli(
        capsys, "protocol", "--model", "absent.onnx", "--tegrastats-log", str(tmp_path / "t.log")
    )
    assert code == 2 and out == ""
    assert "tegrastats not found: this is not a Jetson" in err
    assert not (tmp_path / "t.log").exists()


class FakeEngine:
    meta = SimpleNamespace(height=8, width=8)
    closed = False

    def predict(self, batch):
        assert batch.shape == (1, 3, 8, 8)
        time.sleep(0.005)

    def close(self):
        FakeEngine.closed = True


def test_protocol_with_a_fake_tegrastats(tmp_path, monkeypatch):
    """A script named tegrastats prints unstamped Nano lines; the recorder stamps them."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "tegrastats"
    fake.write_text(
        f"#!{sys.executable}\nimport sys, time\n"
        "while True:\n"
        f"    print({NANO_IDLE!r}, flush=True)\n"
        "    print('half a li', flush=True)\n"
        "    time.sleep(0.05)\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    result = proto.run_protocol(
        model,
        tmp_path / "out" / "tegrastats.log",
        tmp_path / "out" / "states.json",
        {"idle": 0.3, "loaded": 0.3, "inferring": 0.3},
        interval_ms=50,
        loader=lambda path: FakeEngine(),
        print_fn=lambda text: None,
    )
    assert FakeEngine.closed
    doc = json.loads((tmp_path / "out" / "states.json").read_text())
    assert [s["name"] for s in doc["states"]] == ["idle", "loaded", "inferring"]
    assert doc["states"][2]["inferences"] > 0
    assert result["log"].skipped > 0 and all(s.t is not None for s in result["log"].samples)
    assert all(r["samples"] > 0 and r["mean_w"] == 2.086 for r in result["rows"])
    assert result["rows"][2]["ips"] > 0
