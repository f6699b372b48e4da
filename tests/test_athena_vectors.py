"""Muse S Athena encoders against the public unit vectors in ../shared/vectors/muse_s_athena."""


import numpy as np
import pytest

from conftest import SHARED, load_vectors
from firmware_sim.protocols import athena

VECTORS = SHARED / "vectors" / "muse_s_athena" / "athena_unit_vectors.json"


@pytest.fixture(scope="module")
def vectors():
    return load_vectors(VECTORS)


def test_lsb_first_fields(vectors):
    for case in vectors["lsb_first_bit_extraction"]["cases"]:
        want = bytes.fromhex(case["bytes_hex"])
        got = athena.pack_lsb_first([case["expected"]], case["width"], n_bytes=len(want), bit_start=case["bit_start"])
        # the vector's other bits are don't-cares for this field: compare the field's bits only
        bits = np.unpackbits(np.frombuffer(want, np.uint8), bitorder="little")
        mine = np.unpackbits(np.frombuffer(got, np.uint8), bitorder="little")
        field = slice(case["bit_start"], case["bit_start"] + case["width"])
        assert np.array_equal(bits[field], mine[field])
        assert not mine[: case["bit_start"]].any() and not mine[field.stop:].any()


def test_eeg_zero_payload_is_minus_725_uV(vectors):
    uv = vectors["eeg_zero_payload"]["expected_every_value_uV"]
    assert athena.eeg_payload(np.full((4, 4), uv)) == bytes(28)


def test_synthetic_packet_is_reproduced(vectors):
    shape = vectors["synthetic_packet_shape"]
    got = athena.packet(7, athena.EEG_TAG, athena.eeg_payload(np.full((4, 4), -725.0442531892816)))
    assert got.hex() == shape["example_hex"]


def test_battery_and_commands(vectors):
    for case in vectors["battery"]["cases"]:
        assert athena.battery_bytes(case["expected_percent"]).hex() == case["bytes_hex"]
    for case in vectors["command_framing"]["cases"]:
        assert list(athena.encode_command(case["command"])) == case["bytes"]


def test_eeg_round_trip_within_one_code():
    rng = np.random.default_rng(0)
    uv = rng.uniform(-700, 700, (4, 4))
    payload = athena.eeg_payload(uv)
    bits = np.unpackbits(np.frombuffer(payload, np.uint8), bitorder="little").reshape(16, 14)
    raw = (bits.astype(np.int64) << np.arange(14)).sum(axis=1)
    np.testing.assert_allclose((raw - 8192) * 1450 / 16383, uv.ravel(), atol=1450 / 16383)
