"""Fault injection: every packet the host misses or sees altered is in the log."""

import numpy as np
import pytest

from firmware_sim.faults import RAIL_UV, FaultSpec, PacketFaults, apply_signal_faults, disconnect_schedule


def _packets(n, start=0):
    return [i.to_bytes(4, "big") + b"\xa0\xc0" for i in range(start, start + n)]


def test_spec_parses_the_cli_syntax_and_rejects_nonsense():
    spec = FaultSpec.parse("loss=0.01, burst=0.001,drift=0.003,railed=EEG C3,burst_packets=40")
    assert (spec.loss, spec.burst, spec.drift, spec.railed, spec.burst_packets) == (0.01, 0.001, 0.003, "EEG C3", 40)
    for bad in ("lost=0.1", "loss", "loss=lots", "loss=1.5", "drift=0.01"):
        with pytest.raises(ValueError):
            FaultSpec.parse(bad)


def test_delivered_packets_are_the_sent_ones_minus_the_logged_losses():
    faults = PacketFaults(FaultSpec(loss=0.05, burst=0.002, burst_packets=30), seed=1)
    delivered = []
    for batch in range(100):
        delivered += faults(_packets(250, batch * 250))
    lost = {i for first, n in faults.lost for i in range(first, first + n)}
    got = [int.from_bytes(p[:4], "big") for p in delivered]
    assert got == [i for i in range(25_000) if i not in lost]
    assert faults.sent == 25_000 and faults.packets_lost == len(lost)
    assert 0.06 < faults.packets_lost / faults.sent < 0.20  # 5 % random + bursts
    assert max(n for _, n in faults.lost) > 10  # bursts, even across batch boundaries


def test_corruption_changes_exactly_one_byte_of_the_logged_packets():
    faults = PacketFaults(FaultSpec(corrupt=0.1), seed=2)
    sent = _packets(2000)
    got = faults(sent)
    changed = [i for i, (a, b) in enumerate(zip(sent, got)) if a != b]
    assert changed == faults.corrupted and 100 < len(changed) < 300
    assert all(sum(x != y for x, y in zip(sent[i], got[i])) == 1 for i in changed)


def test_duplicates_and_reordering_are_logged():
    faults = PacketFaults(FaultSpec(duplicate=0.02, reorder=0.02), seed=3)
    got = faults(_packets(5000))
    assert len(got) == 5000 + len(faults.duplicated) and faults.duplicated and faults.reordered
    numbers = [int.from_bytes(p[:4], "big") for p in got]
    assert sorted(set(numbers)) == list(range(5000))
    assert sum(b < a for a, b in zip(numbers, numbers[1:])) == len(faults.reordered)


def test_same_seed_same_faults():
    a, b = PacketFaults(FaultSpec(loss=0.1, corrupt=0.05), seed=7), PacketFaults(FaultSpec(loss=0.1, corrupt=0.05), seed=7)
    assert a(_packets(1000)) == b(_packets(1000)) and a.lost == b.lost


def test_loss_mask_follows_the_same_model_and_log():
    faults = PacketFaults(FaultSpec(burst=0.001, burst_packets=50), seed=4)
    mask = faults.lost_mask(200_000)
    assert mask.sum() == faults.packets_lost
    runs = [n for _, n in faults.lost]
    assert 30 < np.mean(runs) < 70


def test_railed_and_flat_electrodes():
    data = np.random.default_rng(0).normal(0, 20, (3, 1000))
    truth = apply_signal_faults(data, 100.0, ["EEG C3", "EEG C4", "EMG"], FaultSpec(railed="EEG C3", flat="EEG C4",
                                                                                   fault_onset=4.0))
    assert np.all(data[0, 400:] == RAIL_UV) and data[0, :400].std() > 10
    assert data[1, 400:].std() < 0.1 and data[2].std() > 10
    assert [(t["kind"], t["onset"], t["channel"]) for t in truth] == [
        ("railed_electrode", 4.0, "EEG C3"), ("flat_electrode", 4.0, "EEG C4")]
    with pytest.raises(ValueError, match="no channel"):
        apply_signal_faults(data, 100.0, ["A"], FaultSpec(railed="B"))


def test_disconnects_arrive_at_the_requested_mean_rate():
    drops = disconnect_schedule(FaultSpec(disconnect_every=600, disconnect_seconds=10), 100 * 3600, seed=5)
    assert 450 < len(drops) < 750 and all(d == 10 for _, d in drops)
    assert disconnect_schedule(FaultSpec(), 3600) == []


def test_forged_packets_keep_framing_and_sequence_but_carry_stale_content():
    faults = PacketFaults(FaultSpec(forge=0.05), seed=6, keep_head=4, keep_tail=1)
    sent = [i.to_bytes(4, "big") + bytes([i % 251, (i * 7) % 251]) + b"\xc0" for i in range(3000)]
    got = faults(sent)
    assert len(got) == 3000 and 80 < len(faults.forged) < 230
    for i in faults.forged:
        assert got[i][:4] == sent[i][:4] and got[i][-1:] == sent[i][-1:]  # sequence and stop byte intact
        assert got[i][4:-1] != sent[i][4:-1] and got[i][4:-1] in {p[4:-1] for p in sent[:i]}  # an older payload
    untouched = set(range(3000)) - set(faults.forged)
    assert all(got[i] == sent[i] for i in untouched)
