"""The LSL outlet: found on loopback by pylsl's resolver, with EEG meta-data, the samples pushed, and
`dreamsync replay --lsl` streaming a file at the replay's pace."""

import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

try:
    import pylsl
except (ImportError, RuntimeError):  # not installed, or liblsl missing
    pytest.skip("pylsl (the lsl extra) is not installed", allow_module_level=True)

from dreamsync.lsl import INSTALL_HINT, LslOutlet, LslUnavailable
from ingest.edf import write_edf
from ingest.stream import SampleBlock

LABELS = ["EEG C4-M1", "EEG Fpz-M2", "EOG E1-M2", "ACC X"]
KINDS = ["EEG", "EEG", "EOG", "ACC"]


def resolve(prop, value, timeout=10.0):
    found = pylsl.resolve_byprop(prop, value, 1, timeout)
    assert found, f"no LSL stream with {prop}={value!r} within {timeout} s"
    inlet = pylsl.StreamInlet(found[0], max_buflen=60)
    inlet.open_stream(timeout)
    return inlet


def channel_entries(info) -> list:
    entries, ch = [], info.desc().child("channels").child("channel")
    while not ch.empty():
        entries.append((ch.child_value("label"), ch.child_value("unit"), ch.child_value("type")))
        ch = ch.next_sibling()
    return entries


def pull(inlet, n, timeout=10.0):
    """``n`` samples as (channels, n) plus their time stamps."""
    samples, stamps, deadline = [], [], time.monotonic() + timeout
    while len(samples) < n and time.monotonic() < deadline:
        chunk, ts = inlet.pull_chunk(timeout=0.5)
        samples += chunk
        stamps += ts
    return np.array(samples, dtype=np.float32).T, np.array(stamps)


def test_outlet_metadata_and_samples_on_loopback():
    sid = f"dreamsync-test-{uuid.uuid4()}"
    with LslOutlet("dreamsync test", LABELS, 250.0, KINDS, source_id=sid) as outlet:
        inlet = resolve("source_id", sid)
        info = inlet.info(5.0)
        assert (info.name(), info.type(), info.channel_count()) == ("dreamsync test", "EEG", 4)
        assert info.nominal_srate() == 250.0
        assert info.channel_format() == pylsl.cf_float32 and info.source_id() == sid
        assert info.desc().child_value("manufacturer") == "dreamsync"
        assert channel_entries(info) == [("EEG C4-M1", "microvolts", "EEG"), ("EEG Fpz-M2", "microvolts", "EEG"),
                                         ("EOG E1-M2", "microvolts", "EOG"), ("ACC X", "g", "ACC")]

        rng = np.random.default_rng(1)
        block = (rng.standard_normal((4, 500)) * 40).astype(np.float32)
        t0 = pylsl.local_clock()
        outlet.push(block[:, :250], first_timestamp=t0)
        outlet.push(block[:, 250:], first_timestamp=t0 + 1.0)
        data, stamps = pull(inlet, 500)
        assert np.array_equal(data, block)  # float32 end to end: exactly the values pushed
        assert stamps[0] == pytest.approx(t0, abs=1e-6)
        assert np.allclose(np.diff(stamps), 1 / 250, atol=1e-6)
        assert outlet.samples_pushed == 500


def test_blocks_of_a_device_stream_through_a_tee():
    sid = f"dreamsync-test-{uuid.uuid4()}"

    class Blocks:
        """The parts of a device a tee uses: an id, a layout and blocks (one with samples lost before it)."""

        device_id, channels, kinds, fs = sid, tuple(LABELS), tuple(KINDS), 100.0

        def __init__(self):
            rng = np.random.default_rng(2)
            self.data = rng.standard_normal((4, 300)).astype(np.float32)
            self.read = 0

        def blocks(self):
            for first, end, lost in ((0, 100, 0), (120, 300, 20)):
                self.read += 1
                yield SampleBlock(sid, self.channels, self.kinds, self.fs, first, self.data[:, first:end],
                                  1.7e9 + first / self.fs, lost)

    device = Blocks()
    with LslOutlet.for_device(device) as outlet:
        assert outlet.name == f"dreamsync {sid}" and outlet.source_id == sid
        inlet = resolve("source_id", sid)
        seen = [b.first_index for b in outlet.tee(device).blocks()]
        assert seen == [0, 120] and device.read == 2
        assert outlet.tee(device).fs == 100.0  # everything else is the device's
        data, stamps = pull(inlet, 280)
    assert np.array_equal(data, np.hstack([device.data[:, :100], device.data[:, 120:]]))
    # time stamps follow the blocks' clock: the 20 lost samples leave a 0.2-s hole
    steps = np.diff(stamps)
    assert np.allclose(steps[:99], 0.01, atol=1e-6) and steps[99] == pytest.approx(0.21, abs=1e-6)
    assert np.allclose(steps[100:], 0.01, atol=1e-6)


def test_bad_blocks_and_a_closed_outlet():
    outlet = LslOutlet("dreamsync shape test", LABELS, 250.0, KINDS)
    with pytest.raises(ValueError, match=r"shape \(4, n\)"):
        outlet.push(np.zeros((3, 10)))
    with pytest.raises(ValueError, match="not the outlet's"):
        outlet.push_block(SampleBlock("x", ("EEG Cz",), ("EEG",), 250.0, 0, np.zeros((1, 5)), 0.0))
    outlet.close()
    outlet.close()
    with pytest.raises(RuntimeError, match="closed"):
        outlet.push(np.zeros((4, 10)))
    with pytest.raises(ValueError, match="one kind each"):
        LslOutlet("x", LABELS, 250.0, KINDS[:2])


def test_missing_pylsl_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pylsl", None)  # what an environment without it gives on import
    with pytest.raises(LslUnavailable, match="pip install 'dreamsync\\[lsl\\]'"):
        LslOutlet("x", LABELS, 250.0, KINDS)


def test_missing_pylsl_in_replay_is_bad_input(tmp_path):
    edf = tmp_path / "short.edf"
    write_edf(edf, np.zeros((1, 2560)), 256.0, ["EEG Cz"], ["EEG"])
    code = ("import sys\nsys.modules['pylsl'] = None\nfrom dreamsync.cli import main\n"
            f"sys.exit(main(['replay', {str(edf)!r}, '--lsl']))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and INSTALL_HINT in res.stderr and "Traceback" not in res.stderr


def test_replay_streams_the_file_at_its_pace(tmp_path):
    fs, seconds, speed = 256.0, 120, 30.0
    rng = np.random.default_rng(3)
    data = (rng.standard_normal((2, int(fs * seconds))) * 30).astype(np.float32)
    edf = tmp_path / "night.edf"
    write_edf(edf, data, fs, ["EEG C3-M2", "EOG E1-M2"], ["EEG", "EOG"])
    name = f"dreamsync replay test {uuid.uuid4()}"
    proc = subprocess.Popen([sys.executable, "-m", "dreamsync", "replay", str(edf), "--speed", str(speed), "--quiet",
                             "--lsl", name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        inlet = resolve("name", name, timeout=60.0)
        info = inlet.info(5.0)
        assert info.type() == "EEG" and info.nominal_srate() == fs
        assert channel_entries(info) == [("EEG C3-M2", "microvolts", "EEG"), ("EOG E1-M2", "microvolts", "EOG")]
        received, stamps = pull(inlet, int(fs * 20), timeout=30.0)
    finally:
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "summary:" in out
    # what arrived is a stretch of the file, sample for sample (EDF keeps 16 bits: within a count)
    assert received.shape[1] >= fs * 20
    first = int(np.argmin(np.abs(data[0] - received[0, 0]) + np.abs(data[1] - received[1, 0])))
    stretch = data[:, first : first + received.shape[1]]
    assert np.allclose(received, stretch, atol=0.01 * np.abs(data).max())
    # stamped on the recording's timeline: one sample period apart
    assert np.allclose(np.diff(stamps), 1 / fs, atol=1e-6)
