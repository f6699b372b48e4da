"""Cohorts: many recordings on local processes or a real Dask cluster, resumable, failure-tolerant."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import threading
import time

import pytest

from conftest import run_cli
from dreamsync.cohort import (COLUMNS, TEST_HOOK_ENV, file_sha256, find_recordings, read_summary,
                              run_cohort)

NIGHT_HOURS = 0.2  # 24 epochs: enough to stage, small enough for seconds per test


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    """Three tiny simulated nights (different seeds), in two folders."""
    from dreamsync.pipeline import simulate_night

    root = tmp_path_factory.mktemp("cohort")
    (root / "lab2").mkdir()
    for seed, where in ((1, "night1.edf"), (2, "night2.edf"), (3, "lab2/night3.edf")):
        simulate_night(str(root / where), hours=NIGHT_HOURS, seed=seed)
    return root


def _copy_nights(cohort_dir, dest):
    """The EDF files of the cohort (no truth files) in a fresh folder."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in cohort_dir.rglob("*.edf"):
        shutil.copy2(f, dest / f.name)
    return dest


def _hooked(monkeypatch, trace, hold=None):
    trace.mkdir(exist_ok=True)
    monkeypatch.setenv(TEST_HOOK_ENV, json.dumps({"trace": str(trace), "hold": hold or {}}))


def _attempts(trace) -> dict:
    """File name -> pids of the processes that started it, from the hook's trace."""
    out: dict = {}
    for f in trace.iterdir():
        name, pid, _ = f.name.rsplit(".", 2)
        out.setdefault(name, []).append(int(pid))
    return out


def _kill_when_started(trace, name, timeout=60.0):
    """Kill the worker process that starts ``name`` (seen in the trace); returns a thread and its result."""
    killed: list = []

    def watch():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = [f for f in trace.glob(f"{name}.*")]
            if started:
                pid = int(started[0].name.rsplit(".", 2)[1])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, killed


def test_recordings_are_found_in_a_folder_a_glob_or_a_file(cohort_dir):
    everything = find_recordings(str(cohort_dir))
    assert [p.name for p in everything] == ["night3.edf", "night1.edf", "night2.edf"]  # sorted by full path
    assert [p.name for p in find_recordings(str(cohort_dir / "night*.edf"))] == ["night1.edf", "night2.edf"]
    assert [p.name for p in find_recordings(str(cohort_dir / "**" / "*.edf"))] == [p.name for p in everything]
    assert find_recordings(str(cohort_dir / "night2.edf")) == [(cohort_dir / "night2.edf").resolve()]
    with pytest.raises(FileNotFoundError):
        find_recordings(str(cohort_dir / "nothing-*.edf"))


def test_a_folder_search_leaves_out_scorers_hypnogram_files(tmp_path):
    (tmp_path / "SC4001E0-PSG.edf").write_bytes(b"signals")
    (tmp_path / "SC4001EC-Hypnogram.edf").write_bytes(b"annotations only")
    (tmp_path / "notes.txt").write_text("not a recording")
    assert [p.name for p in find_recordings(str(tmp_path))] == ["SC4001E0-PSG.edf"]


def test_the_light_copies_of_stage_and_kind_names_match_the_numerical_core():
    from dreamsync.cohort import ADJUSTMENT_KINDS, STAGE_NAMES
    from dsp.events import KINDS
    from dsp.stages import STAGES

    assert ADJUSTMENT_KINDS == KINDS and STAGE_NAMES == STAGES


def test_content_hash_is_the_sha256_of_the_bytes_read_in_chunks(cohort_dir):
    path = cohort_dir / "night1.edf"
    assert file_sha256(path, chunk_bytes=4096) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_local_workers_write_what_the_single_file_command_writes(cohort_dir, tmp_path):
    from dreamsync.pipeline import stage_file

    lines: list = []
    result = run_cohort(cohort_dir, tmp_path / "out", workers=2, progress=lines.append)
    assert [r["status"] for r in result.rows] == ["done"] * 3
    assert sum("done" in line and "[" in line for line in lines) == 3
    for row in result.rows:
        doc = json.loads((tmp_path / "out" / row["result"]).read_text())
        expected = stage_file(row["file"]).to_json()
        assert doc["stages"] == expected["stages"] and doc["confidence"] == expected["confidence"]
        assert row["TST_min"] == pytest.approx(expected["statistics"]["TST"])
        assert row["epochs"] == len(expected["stages"]) == round(NIGHT_HOURS * 120)
        scored = [c for c, s in zip(expected["confidence"], expected["stages"]) if s != "?"]
        assert row["mean_confidence"] == pytest.approx(sum(scored) / len(scored))
        assert sum(row[f"{s}_min"] for s in ("W", "N1", "N2", "N3", "REM")) + row["unscored_min"] == \
            pytest.approx(NIGHT_HOURS * 60)
    table = read_summary(result.summary_csv)
    assert list(table[0]) == COLUMNS and [t["sha256"] for t in table] == [r["sha256"] for r in result.rows]

    pq = pytest.importorskip("pyarrow.parquet")
    parquet = pq.read_table(result.summary_parquet).to_pylist()
    assert [p["file"] for p in parquet] == [r["file"] for r in result.rows]
    assert [p["TST_min"] for p in parquet] == pytest.approx([r["TST_min"] for r in result.rows])


def test_rerun_skips_by_content_also_a_renamed_copy_and_redoes_a_changed_file(cohort_dir, tmp_path, monkeypatch):
    from dreamsync.pipeline import simulate_night

    nights = _copy_nights(cohort_dir, tmp_path / "in")
    out = tmp_path / "out"
    first = run_cohort(nights, out, workers=1)
    assert first.count("done") == 3

    (nights / "night1.edf").rename(nights / "renamed.edf")  # same bytes, new name
    shutil.copy(nights / "night2.edf", nights / "copy-of-night2.edf")
    simulate_night(str(nights / "night3.edf"), hours=NIGHT_HOURS, seed=4)  # same name, new content: redone
    trace = tmp_path / "trace"
    _hooked(monkeypatch, trace)
    again = run_cohort(nights, out, workers=1)
    status = {os.path.basename(r["file"]): r["status"] for r in again.rows}
    assert status == {"renamed.edf": "skipped", "copy-of-night2.edf": "skipped", "night2.edf": "skipped",
                      "night3.edf": "done"}
    assert set(_attempts(trace)) == {"night3.edf"}  # nothing else was computed
    renamed = next(r for r in again.rows if r["file"].endswith("renamed.edf"))
    original = next(r for r in first.rows if r["file"].endswith("night1.edf"))
    assert renamed["sha256"] == original["sha256"] and renamed["result"] == original["result"]
    assert renamed["TST_min"] == original["TST_min"]


def test_a_corrupt_recording_is_a_failed_row_and_the_others_are_done(cohort_dir, tmp_path):
    nights = _copy_nights(cohort_dir, tmp_path / "in")
    (nights / "garbage.edf").write_bytes(b"not an EDF at all" * 20)
    whole = (nights / "night2.edf").read_bytes()
    (nights / "truncated.edf").write_bytes(whole[: len(whole) // 3])
    result = run_cohort(nights, tmp_path / "out", workers=2)
    rows = {os.path.basename(r["file"]): r for r in result.rows}
    assert {n: r["status"] for n, r in rows.items()} == {
        "garbage.edf": "failed", "truncated.edf": "failed", "night1.edf": "done", "night2.edf": "done",
        "night3.edf": "done"}
    assert "garbage.edf" in rows["garbage.edf"]["error"] and "truncated.edf" in rows["truncated.edf"]["error"]
    assert "\n" not in rows["garbage.edf"]["error"] and rows["garbage.edf"]["result"] is None
    table = {os.path.basename(t["file"]): t for t in read_summary(result.summary_csv)}
    assert table["truncated.edf"]["status"] == "failed" and table["truncated.edf"]["error"]
    rerun = run_cohort(nights, tmp_path / "out", workers=1)  # failures are not cached: tried again
    assert sorted(r["status"] for r in rerun.rows) == ["failed", "failed", "skipped", "skipped", "skipped"]


def test_detect_over_a_cohort_counts_alarms_per_kind(cohort_dir, tmp_path):
    from dreamsync.detection import detect_file

    result = run_cohort(cohort_dir / "night1.edf", tmp_path / "out", kind="detect", workers=1)
    (row,) = result.rows
    report = detect_file(row["file"])
    assert json.loads((tmp_path / "out" / row["result"]).read_text()) == json.loads(json.dumps(report.to_json()))
    for kind in ("auditory", "electrical", "entrainment", "tampering"):
        assert row[f"{kind}_alarms"] == sum(e.kind == kind for e in report.alarms)
        assert row[f"{kind}_authorized"] == 0
    assert row["epochs"] == len(report.stages) and row["mean_confidence"] is None
    assert result.summary_csv.name == "summary-detect.csv"


def test_report_over_a_cohort_writes_a_page_per_recording_and_both_kinds_of_columns(cohort_dir, tmp_path):
    pytest.importorskip("matplotlib")
    res = run_cli("report", cohort_dir / "night1.edf", "--out-dir", tmp_path / "out", "--workers", "1", "--json",
                  "--quiet")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["done"] == 1 and doc["summary_csv"].endswith("summary-report.csv")
    for row in doc["rows"]:
        page = (tmp_path / "out" / row["result"]).read_text()
        assert row["result"].endswith(".report.html") and os.path.basename(row["file"]) in page
        assert 0 < row["mean_confidence"] <= 1 and row["auditory_alarms"] == 0 and row["epochs"] == 24
    assert run_cli("report", cohort_dir, "--out-dir", tmp_path / "o", "--png", tmp_path / "p").returncode == 2


def test_local_workers_use_one_thread_per_numerical_library_unless_told_otherwise(monkeypatch):
    from dreamsync.cohort import WORKER_THREADS_ENV, _single_threaded

    for name in WORKER_THREADS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice stands
    _single_threaded()
    assert os.environ["OMP_NUM_THREADS"] == "3" and os.environ["OPENBLAS_NUM_THREADS"] == "1"
    assert os.environ["NUMBA_NUM_THREADS"] == "1"


def test_local_worker_killed_mid_run_loses_only_the_running_recordings(cohort_dir, tmp_path, monkeypatch):
    trace = tmp_path / "trace"
    _hooked(monkeypatch, trace, hold={"night2.edf": 30})
    thread, killed = _kill_when_started(trace, "night2.edf")
    result = run_cohort(cohort_dir, tmp_path / "out", workers=2, retries=2)
    thread.join()
    assert killed, "the held recording never started"
    assert [r["status"] for r in result.rows] == ["done"] * 3
    attempts = _attempts(trace)
    assert len(attempts["night2.edf"]) == 2 and killed[0] in attempts["night2.edf"]
    row = next(r for r in result.rows if r["file"].endswith("night2.edf"))
    assert row["attempts"] == 2


def test_a_recording_whose_worker_always_dies_fails_after_its_retries(cohort_dir, tmp_path, monkeypatch):
    trace = tmp_path / "trace"
    _hooked(monkeypatch, trace, hold={"night1.edf": 30})
    thread, killed = _kill_when_started(trace, "night1.edf")
    result = run_cohort(cohort_dir / "night1.edf", tmp_path / "out", workers=1, retries=0)
    thread.join()
    (row,) = result.rows
    assert killed and row["status"] == "failed" and "died" in row["error"]


# ---------------------------------------------------------------- a real Dask cluster on loopback

@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                                       dashboard_address=None, silence_logs=40)
    yield cluster
    cluster.close()


def test_dask_cluster_stages_every_recording_with_one_worker_killed(cohort_dir, tmp_path, monkeypatch,
                                                                    dask_cluster):
    trace = tmp_path / "trace"
    _hooked(monkeypatch, trace, hold={"night1.edf": 30})
    thread, killed = _kill_when_started(trace, "night1.edf")
    lines: list = []
    result = run_cohort(cohort_dir, tmp_path / "out", scheduler=dask_cluster.scheduler_address,
                        progress=lines.append)
    thread.join()
    assert killed, "the held recording never started"
    assert "Dask cluster at tcp://127.0.0.1" in lines[0]
    assert [r["status"] for r in result.rows] == ["done"] * 3
    attempts = _attempts(trace)
    assert len(attempts["night1.edf"]) == 2 and killed[0] in attempts["night1.edf"]
    assert all(len(attempts[name]) == 1 for name in ("night2.edf", "night3.edf"))  # only the lost one rerun
    local = run_cohort(cohort_dir, tmp_path / "local", workers=1)  # the cluster computes what a pool does
    for a, b in zip(result.rows, local.rows):
        assert (tmp_path / "out" / a["result"]).read_text() == (tmp_path / "local" / b["result"]).read_text()


def test_dask_rerun_with_a_client_skips_everything(cohort_dir, tmp_path, dask_cluster):
    distributed = pytest.importorskip("distributed")
    with distributed.Client(dask_cluster) as client:
        first = run_cohort(cohort_dir, tmp_path / "out", scheduler=client)
        again = run_cohort(cohort_dir, tmp_path / "out", scheduler=client)
        assert client.status == "running"  # a client the caller made is left open
    assert first.count("done") == 3 and again.count("skipped") == 3
    assert [r["TST_min"] for r in again.rows] == [r["TST_min"] for r in first.rows]


def test_cli_runs_on_a_dask_scheduler_and_an_unreachable_one_is_a_connection_error(cohort_dir, tmp_path,
                                                                                    dask_cluster):
    from dreamsync.cohort import DaskExecutor

    res = run_cli("detect", cohort_dir / "night2.edf", "--out-dir", tmp_path / "out", "--scheduler",
                  dask_cluster.scheduler_address, "--json", "--quiet")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["done"] == 1 and doc["rows"][0]["result"] == "night2.events.json"
    with pytest.raises(ConnectionError, match="cannot reach the Dask scheduler"):
        DaskExecutor("tcp://127.0.0.1:1", timeout=0.5)


# ---------------------------------------------------------------- the command line

def test_cli_stages_a_folder_prints_progress_and_exits_4_when_some_failed(cohort_dir, tmp_path):
    nights = _copy_nights(cohort_dir, tmp_path / "in")
    res = run_cli("stage", nights, "--out-dir", tmp_path / "out", "--workers", "2")
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("] done ") == 3 and "ETA" in res.stderr
    assert str(tmp_path / "out" / "summary-stage.csv") in res.stdout
    (nights / "broken.edf").write_bytes(b"0       broken")
    res = run_cli("stage", nights / "*.edf", "--out-dir", tmp_path / "out", "--workers", "1", "--json")
    assert res.returncode == 4
    doc = json.loads(res.stdout)
    assert (doc["done"], doc["skipped"], doc["failed"]) == (0, 3, 1)
    assert doc["summary_csv"].endswith("summary-stage.csv") and "broken.edf" in doc["rows"][0]["file"]
    assert "1 of 4 recordings failed" in res.stderr


def test_cli_needs_out_dir_for_many_recordings_and_keeps_single_file_behaviour(cohort_dir, tmp_path):
    res = run_cli("stage", cohort_dir, "--out", tmp_path / "x.json")
    assert res.returncode == 2 and "--out-dir" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = run_cli("stage", cohort_dir / "night1.edf")  # one file: the hypnogram on stdout, as before
    assert res.returncode == 0 and len(json.loads(res.stdout)["stages"]) == 24 and not res.stderr
    res = run_cli("stage", tmp_path / "nothing-*.edf", "--out-dir", tmp_path / "o")
    assert res.returncode == 2 and "no file matches" in res.stderr
