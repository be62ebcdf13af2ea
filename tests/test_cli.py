import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import duckdb
import pytest

from kenshin.cli import main
from tests import live_api


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["simulate", "--meters", "0"], "--meters"),
        (["simulate", "--days", "x"], "--days"),
        (["simulate", "--start", "2026-02-30"], "YYYY-MM-DD"),
        (["simulate", "--area", "11"], "unknown area"),
        (["simulate", "--gen2-share", "1.5"], "--gen2-share"),
        (["simulate", "--bogus"], "--bogus"),
        (["serve", "--db", "/nonexistent/kenshin.duckdb"], "does not exist"),
        (["up", "--speed", "0"], "--speed"),
        (["nonsense"], "nonsense"),
    ],
)
def test_bad_arguments_get_one_line_and_exit_2(capsys, args, fragment):
    code, _, err = run(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kenshin: error: ")
    assert fragment in lines[0]


def test_simulate_stores_and_summarises(capsys, tmp_path):
    db = tmp_path / "k.duckdb"
    code, out, _ = run(
        capsys,
        "simulate",
        "--meters",
        "150",
        "--days",
        "1",
        "--start",
        "2026-04-01",
        "--db",
        str(db),
        "--seed",
        "5",
    )
    assert code == 0
    assert "readings 30-min" in out and "forward energy" in out and "time taken" in out
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM meters").fetchone()[0] == 150
        stored = con.execute("SELECT count(*) FROM readings WHERE resolution = 30").fetchone()[0]
        meta = json.loads(con.execute("SELECT value FROM meta WHERE key = 'fleet'").fetchone()[0])
    assert f"{stored:,}" in out
    assert meta["seed"] == 5 and meta["n_meters"] == 150
    # a second run refuses to clobber the store unless told to
    code, _, err = run(capsys, "simulate", "--meters", "10", "--db", str(db))
    assert code == 2 and "--overwrite" in err


def test_simulate_wire_reports_frames_and_deadlines(capsys, tmp_path):
    db = tmp_path / "w.duckdb"
    args = ["simulate", "--meters", "120", "--days", "1", "--start", "2026-04-01"]
    code, out, _ = run(capsys, *args, "--db", str(db), "--aroute", "wire")
    assert code == 0
    assert "frames accepted by the HES" in out and "on time A1" in out
    with duckdb.connect(str(db), read_only=True) as con:
        meta = json.loads(con.execute("SELECT value FROM meta WHERE key = 'fleet'").fetchone()[0])
    assert meta["aroute"] == "wire"
    code, _, err = run(capsys, *args, "--db", str(tmp_path / "x.duckdb"), "--aroute", "smoke")
    assert code == 2 and "--aroute" in err


def test_service_mode_commands_refuse_bad_arguments(capsys, tmp_path):
    code, _, err = run(capsys, "fleet", "--speed", "fast", "--meters", "10")
    assert code == 2 and "--speed" in err
    code, _, err = run(capsys, "hes", "--db", str(tmp_path / "empty.duckdb"), "--mqtt", "x://y")
    assert code == 2 and ("MQTT URL" in err or "no meters" in err)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_up_serves_health_and_stops_cleanly(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kenshin",
            "up",
            "--meters",
            "200",
            "--speed",
            "3600",
            "--backfill-hours",
            "2",
            "--port",
            str(port),
            "--db",
            str(tmp_path / "up.duckdb"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        health = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and health is None:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/v1/health", timeout=2
                ) as r:
                    health = json.load(r)
            except OSError:
                time.sleep(0.3)
        assert health is not None, "kenshin up did not serve /api/v1/health within 60 s"
        assert health["status"] == "ok" and health["meters"] == 200
        # accelerated time: an hour of simulated time per real second, so frames keep arriving
        first = health["frames_accepted"]
        time.sleep(2.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2) as r:
            later = json.load(r)
        assert later["frames_accepted"] > first
        assert later["readings_stored"] > 0
        # the head-end's SLOs and metrics are served by the same process
        base = f"http://127.0.0.1:{port}"
        # only health answers without a token (issue 14); the local admin's is in the data dir
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(f"{base}/api/v1/hes/slo", timeout=5)
        slo = live_api.get_json(base, "/api/v1/hes/slo", tmp_path)
        a1 = [d for d in slo["days"] if d["duty"] == "A1" and d["expected"]]
        assert a1 and all(0.9 < d["on_time_share"] <= 1.0 for d in a1)
        metrics = live_api.get(base, "/metrics", tmp_path).decode()
        assert "kenshin_hes_frames_accepted_total" in metrics
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "stopped" in output


def test_vee_sweeps_a_day_by_hand_and_is_idempotent(capsys, tmp_path):
    db = tmp_path / "k.duckdb"
    args = ["--meters", "120", "--days", "1", "--start", "2026-04-01", "--seed", "3"]
    code, _, _ = run(capsys, "simulate", *args, "--loss", "0.05", "--db", str(db))
    assert code == 0
    # simulate swept the day already; sweeping it again by hand changes nothing
    code, _, err = run(capsys, "vee", "--day", "2026-04-01", "--db", str(db))
    assert code == 0, err
    text = " ".join(err.split())  # the console wraps long lines
    reports = [part.split(";")[1] for part in text.split("2026-04-01 active_")[1:]]
    assert len(reports) == 6, text  # 2 channels × 30, 15 and 5 min
    # nothing new; the gaps a lost message left (its registers lost too) are listed again
    assert all(r.strip().startswith("0 new versions") for r in reports), text
    assert "forward 30-min: 120 meters" in text and "reverse 5-min:" in text
    assert "S3 differences 2026-04-01:" in text
    # one channel and resolution only: no differences
    code, _, err = run(
        capsys, "vee", "--day", "2026-04-01", "--db", str(db), "--channel", "active_reverse",
        "--resolutions", "30",
    )  # fmt: skip
    text = " ".join(err.split())
    assert code == 0 and text.count("2026-04-01 active_") == 1 and "S3" not in text
    code, _, err = run(capsys, "vee", "--day", "2026-04-01", "--db", str(db), "--resolutions", "7")
    assert code == 2 and "--resolutions" in err
    # the passes one at a time: the same reports, still nothing new
    code, _, err = run(capsys, "vee", "--day", "2026-04-01", "--db", str(db), "--passes", "1")
    in_turn = " ".join(err.split())
    assert code == 0 and in_turn.count("; 0 new versions, ") == 6, in_turn
    code, _, err = run(capsys, "vee", "--day", "2026-04-01", "--db", str(db), "--passes", "0")
    assert code == 2 and "--passes" in err
    # a day the store holds nothing of (a typo, a day before the fleet) is refused, not swept
    # into a day of "missing" rows and gaps
    rows_before = sum(_resolutions(db).values())
    code, _, err = run(capsys, "vee", "--day", "2026-04-09", "--db", str(db))
    assert code == 2
    assert err.strip() == (
        "kenshin: error: --day 2026-04-09: the store holds no values of that day "
        "(it holds 2026-04); nothing swept"
    )
    assert sum(_resolutions(db).values()) == rows_before


def _resolutions(db) -> dict[int, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT resolution, count(*) FROM readings GROUP BY 1").fetchall()
    finally:
        con.close()
    return {int(r): int(n) for r, n in rows}


def test_the_soft_switch_is_a_command_line_setting_and_vee_follows_the_store(capsys, tmp_path):
    """SPEC A5: off by default (15-min values recorded, not sent); --send-15min sends them, the
    store remembers it, and a hand-run sweep of that store sweeps them."""
    common = ["--meters", "60", "--days", "1", "--start", "2026-04-01", "--seed", "2"]
    off, on = tmp_path / "off.duckdb", tmp_path / "on.duckdb"
    assert run(capsys, "simulate", *common, "--db", str(off))[0] == 0
    assert run(capsys, "simulate", *common, "--send-15min", "--db", str(on))[0] == 0
    assert 15 not in _resolutions(off)
    assert _resolutions(on)[15] > 0
    for db, swept in ((off, False), (on, True)):
        code, _, err = run(capsys, "vee", "--day", "2026-04-01", "--db", str(db))
        assert code == 0, err
        line = next(t for t in err.splitlines() if "active_forward 15-min" in t)
        assert line.split("15-min: ")[1].startswith("0 meters") is not swept, line


def test_a_head_end_takes_its_duties_from_the_installed_fleet(tmp_path) -> None:
    import datetime as dt

    from kenshin.app.services import install_fleet, policy_from_store
    from kenshin.core.timeslots import JST
    from kenshin.fleet.simulator import FleetConfig
    from kenshin.mdms.duckdb_store import DuckDBStore

    store = DuckDBStore(tmp_path / "s.duckdb")
    config = FleetConfig(
        n_meters=50,
        start=dt.datetime(2026, 4, 1, tzinfo=JST),
        send_15min=True,
        sample_5min_share_lv=0.2,
        recording_period_5=dt.timedelta(days=3),
    )
    install_fleet(store, config)
    policy = policy_from_store(store)
    assert policy.send_15min is True
    assert policy.sample_5min_share_lv == 0.2
    assert policy.recording_period_5 == dt.timedelta(days=3)
    store.close()
    assert policy_from_store(DuckDBStore(tmp_path / "empty.duckdb")).send_15min is False


def test_the_default_store_lives_in_the_data_directory(capsys, tmp_path, monkeypatch):
    """X3: files kenshin keeps by default go to data/ (0700, files 0600); a store left by an
    earlier version in the working directory is pointed at, not silently ignored."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kenshin.duckdb").write_bytes(b"")  # the old default's place
    code, _, err = run(capsys, "vee", "--day", "2026-04-01")
    assert code == 2
    assert "data/kenshin.duckdb does not exist" in err
    assert "pass --db kenshin.duckdb or move it to data/" in err
    assert not (tmp_path / "data").exists()  # nothing created for a store that is not there
    code, _, err = run(capsys, "simulate", "--meters", "5", "--days", "1", "--start", "2026-04-01")
    assert code == 0, err
    assert (tmp_path / "data" / "kenshin.duckdb").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700


def test_version_and_fleet_client_ids(capsys):
    from importlib.metadata import version

    from kenshin.app.services import fleet_client_id

    code, out, _ = run(capsys, "--version")
    assert (code, out.strip()) == (0, f"kenshin {version('kenshin')}")
    assert fleet_client_id("kenshin", "03", 1) != fleet_client_id("drill-a", "03", 1)


def test_a_fleet_state_of_another_fleet_is_refused(capsys, tmp_path):
    """The state file holds the meters' counters of one fleet: another fleet (other meters,
    seed or first day) is refused in one line before anything is sent."""
    import numpy as np

    from kenshin.fleet.simulator import FleetConfig
    from kenshin.fleet.state import FleetState

    path = tmp_path / "fleet.npz"
    FleetState(FleetConfig(n_meters=10, seed=1).describe(), 0, np.zeros(10, np.int64)).save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    args = ["fleet", "--dev-key", "--mqtt", "mqtt://127.0.0.1:1", "--state", str(path)]
    code, _, err = run(capsys, *args, "--meters", "12", "--start", "2026-04-01")
    assert code == 2
    [line] = err.strip().splitlines()[-1:]
    assert line.startswith("kenshin: error: ") and "holds the state of another fleet" in line
    assert "10 meters, seed 1" in line
    path.write_bytes(b"not a state")
    code, _, err = run(capsys, *args, "--meters", "10")
    assert code == 2 and "is not a kenshin fleet state" in err.strip().splitlines()[-1]
