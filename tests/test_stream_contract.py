"""SampleBlock validation and the Device life cycle and loss accounting."""

import threading

import numpy as np
import pytest

from ingest.device import Device
from ingest.stream import SampleBlock


def block(first=0, n=10, lost=0, channels=("EEG C3",), kinds=("EEG",), dtype=np.float32):
    return SampleBlock("dev", channels, kinds, 250.0, first, np.zeros((len(channels), n), dtype=dtype), 1e9, lost)


def test_block_exposes_samples_units_and_times():
    b = block(first=100, n=5, channels=("EEG C3", "ACC X"), kinds=("EEG", "ACC"))
    assert b.n_samples == 5 and b.end_index == 105
    assert b.units == ("uV", "g")
    np.testing.assert_allclose(b.times() - 1e9, np.arange(5) / 250.0, atol=1e-6)


@pytest.mark.parametrize("bad", [
    dict(channels=("a", "b")),                       # rows != labels
    dict(kinds=("BRAIN",)),                          # unknown kind
    dict(dtype=np.int16),                            # not float
    dict(first=-1),                                  # negative index
])
def test_block_rejects_malformed_input(bad):
    with pytest.raises(ValueError):
        if "channels" in bad:
            SampleBlock("d", bad["channels"], ("EEG", "EEG"), 250.0, 0, np.zeros((1, 3)), 0.0)
        else:
            block(**bad)


class ScriptedDevice(Device):
    """Emits a fixed list of blocks; records which hooks ran."""

    def __init__(self, blocks):
        super().__init__()
        self._script = list(blocks)
        self.calls = []
        self.channels, self.kinds, self.fs, self.device_id = ("EEG C3",), ("EEG",), 250.0, "scripted"

    def _open(self): self.calls.append("open")
    def _start(self): self.calls.append("start")
    def _stop(self): self.calls.append("stop")
    def _close(self): self.calls.append("close")

    def _read_block(self):
        return self._script.pop(0) if self._script else None


def test_device_counts_received_and_lost_samples_across_gaps():
    dev = ScriptedDevice([block(0, 10), block(13, 5, lost=3), block(18, 7)])
    with dev:
        dev.start()
        got = list(dev.blocks())
    assert [b.first_index for b in got] == [0, 13, 18]
    assert dev.samples_received == 22 and dev.samples_lost == 3
    assert dev.calls == ["open", "start", "stop", "close"]
    assert not dev.is_open


def test_device_rejects_a_block_that_hides_a_gap():
    dev = ScriptedDevice([block(0, 10), block(12, 5, lost=0)])
    dev.open()
    dev.start()
    with pytest.raises(RuntimeError, match="stream contract"):
        list(dev.blocks())


def test_device_must_be_opened_and_started_in_order():
    dev = ScriptedDevice([])
    with pytest.raises(RuntimeError):
        dev.start()
    dev.open()
    with pytest.raises(RuntimeError):
        next(dev.blocks())
    dev.close()
    dev.close()  # idempotent


def test_stop_from_another_thread_ends_iteration():
    class Endless(ScriptedDevice):
        def _read_block(self):
            self._i = getattr(self, "_i", 0)
            b = block(self._i, 10)
            self._i += 10
            return b

    dev = Endless([])
    dev.open()
    dev.start()
    seen = 0
    for _ in dev.blocks():
        seen += 1
        if seen == 5:
            threading.Thread(target=dev.stop).start()
        assert seen < 10_000
    assert dev.samples_received == 10 * seen and not dev.is_streaming
