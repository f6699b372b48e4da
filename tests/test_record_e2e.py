"""Recording end to end over a real serial device, and surviving a killed recording."""

import json
import signal
import subprocess
import sys
import time

import numpy as np

from conftest import ROOT, run_cli
from ingest.capture import CaptureReader
from ingest.edf import read_edf


def _start(*args):
    return subprocess.Popen([sys.executable, "-m", "dreamsync", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)


def test_record_a_cyton_on_a_serial_port_with_zero_unexplained_loss(tmp_path):
    server = _start("sim-serve", "--device", "cyton", "--seed", "5", "--truth", tmp_path / "served.json")
    try:
        port = server.stdout.readline().split(" on ")[1].split()[0]
        out = tmp_path / "night.edf"
        res = run_cli("record", "--device", "cyton", "--port", port, "--duration", "10s", "--out", out, timeout=120)
        assert res.returncode == 0, res.stderr
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    rec = read_edf(out)
    assert rec.signals[0].fs == 250.0 and rec.signals[0].n_samples == 2500 and rec.gaps == []
    assert "0 samples lost" in res.stdout and (tmp_path / "night.dsraw").is_file()
    # the capture decodes again to the same samples
    res = run_cli("convert", tmp_path / "night.dsraw", "--out", tmp_path / "again.edf")
    assert res.returncode == 0, res.stderr
    again = read_edf(tmp_path / "again.edf")
    n = rec.signals[0].n_samples
    for k in range(8):
        np.testing.assert_allclose(again.read(k)[:n], rec.read(k), atol=0.05)
    served = json.loads((tmp_path / "served.json").read_text())
    assert served["faults"]["packets"]["packets_lost"] == 0


def test_a_killed_recording_loses_at_most_the_last_second(tmp_path):
    out = tmp_path / "killed.edf"
    proc = _start("record", "--device", "auto", "--out", out)  # falls back to the emulated Cyton, real time
    capture = tmp_path / "killed.dsraw"
    deadline = time.monotonic() + 60
    while not capture.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    time.sleep(4.0)
    proc.kill()  # SIGKILL: no clean-up of any kind
    alive = time.monotonic() - started
    proc.communicate(timeout=30)
    assert not out.exists()  # the EDF+ is written on stop, which never came
    with CaptureReader(capture) as reader:
        payload = sum(len(r.payload) for r in reader if r.source < 0xFFFE)
    assert payload / 33 / 250.0 >= alive - 1.5  # at most the last second (plus start-up) is lost
    res = run_cli("convert", capture, "--out", tmp_path / "recovered.edf")
    assert res.returncode == 0, res.stderr
    assert read_edf(tmp_path / "recovered.edf").duration >= alive - 1.5
