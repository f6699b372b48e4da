"""Cohorts: the same ``stage``, ``detect`` or ``report`` over many recordings, on local processes or Dask.

One task is one recording. The driver (this process) finds the recordings and hands them to an
executor: a standard-library process pool on this machine, or the workers of a Dask distributed
cluster (``distributed.Client(address)``). A worker first hashes a recording's bytes (SHA-256;
a rerun reuses the hash of a file whose path, size and modification time are unchanged); the
driver then skips it if that content was done before, else gives out its task. Workers only read
and compute; they send the result back, and the driver alone writes in the output directory, each
file atomically (temporary file + rename):

- ``OUT/<stem>.hypnogram.json`` (stage), ``OUT/<stem>.events.json`` (detect) or
  ``OUT/<stem>.report.html`` (report): what the single-file command writes;
- ``OUT/.dreamsync-cohort/<kind>/<settings>/<sha256>.json``: the cache entry of a finished
  recording (its summary row and result file), keyed by content and settings, never by name: a
  rerun skips a recording already done, also when it was renamed or copied;
- ``OUT/summary-<kind>.csv`` (and ``.parquet`` when pyarrow is installed): one row per recording of
  the run, done, skipped or failed, with its error.

A recording that cannot be read or staged is a failed row, never an exception that stops the
others. A worker process that dies (killed, out of memory) loses only the recording(s) it was
running: they are submitted again, up to ``retries`` times. On a Dask cluster the scheduler also
reruns a task whose worker died by itself (``distributed.scheduler.allowed-failures``); in the
local pool a dead worker breaks the whole standard-library pool, so the recordings the other
workers were running are lost with it and retried too.

Kinds of task: ``stage``, ``detect`` and ``report`` (the HTML page of :mod:`dreamsync.report`); one
more is one call of :func:`register_task` with a module-level function (workers import it by name):
``run(path, options) -> (payload_bytes, row_dict)``.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import pathlib
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

from . import __version__

#: Recording file names a directory is searched for (case-insensitive, subfolders too).
RECORDING_SUFFIXES = (".edf", ".bdf")
#: Files a directory search leaves out: scorers' hypnograms beside the signals (Sleep-EDF layout).
NOT_RECORDINGS = ("-hypnogram.edf",)
#: An epoch staged with confidence below this counts as low-confidence in the summary.
LOW_CONFIDENCE = 0.5
#: Where the cache lives inside the output directory.
CACHE_DIR = ".dreamsync-cohort"
#: Thread pools of the numerical libraries in a local worker: one thread each unless the environment
#: says otherwise, since a cohort's parallelism is its processes (Dask's nanny does the same).
WORKER_THREADS_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                      "NUMBA_NUM_THREADS": "1"}
#: Environment variable of the test hook (see :func:`_test_hook`); unused in normal runs.
TEST_HOOK_ENV = "DREAMSYNC_COHORT_TEST_HOOK"

ADJUSTMENT_KINDS = ("auditory", "electrical", "entrainment", "tampering")  # = dsp.events.KINDS, kept light
STAGE_NAMES = ("W", "N1", "N2", "N3", "REM")

#: Columns of the summary table, in order: the recording (absolute path), its SHA-256, status (done,
#: skipped: done before, failed), error (one line), result file (in OUT), length in hours, epochs,
#: sleep statistics in minutes (SE 0..1; SOL and REM latency empty when there is no sleep / no
#: REM), minutes per stage and unscorable, mean confidence of the scored epochs and the share below
#: :data:`LOW_CONFIDENCE` (stage and report; empty for detect), flagged adjustments per kind without
#: (alarms) and with the sleeper's consent (detect and report), wall and CPU s of the task in its
#: worker (of the run that computed it, for a skipped row), and attempts (1 + workers lost under it).
COLUMNS = (
    ["file", "sha256", "status", "error", "result", "duration_h", "epochs", "TST_min", "SE", "WASO_min",
     "SOL_min", "REM_latency_min"]
    + [f"{name}_min" for name in STAGE_NAMES]
    + ["unscored_min", "mean_confidence", "low_confidence_share"]
    + [f"{kind}_{what}" for kind in ADJUSTMENT_KINDS for what in ("alarms", "authorized")]
    + ["compute_s", "cpu_s", "attempts"]
)
_TEXT_COLUMNS = {"file", "sha256", "status", "error", "result"}
_INT_COLUMNS = {"epochs", "attempts"} | {f"{k}_{w}" for k in ADJUSTMENT_KINDS for w in ("alarms", "authorized")}


@dataclass(frozen=True)
class TaskKind:
    """A kind of per-recording task.

    Attributes
    ----------
    name : str
        Command name (``"stage"``, ``"detect"``, ...).
    run : callable
        ``run(path, options) -> (payload, row)``: ``payload`` is the bytes of the result file,
        ``row`` the summary columns it fills. A module-level function: workers import it by name.
        Errors are raised as usual; the engine turns them into a failed row.
    suffix : str
        Result file name after the recording's stem, e.g. ``".hypnogram.json"``.
    """

    name: str
    run: Callable
    suffix: str


TASKS: dict = {}


def register_task(name: str, run: Callable, suffix: str) -> TaskKind:
    """Add a kind of task (see :class:`TaskKind`); returns it."""
    TASKS[name] = TaskKind(name, run, suffix)
    return TASKS[name]


# ---------------------------------------------------------------- the tasks (run in the workers)

def _staging_row(stages_json: list, statistics: dict, confidence: list | None) -> dict:
    """Summary columns of a hypnogram: statistics in minutes, confidence over scored epochs."""
    row = {"epochs": len(stages_json), "TST_min": statistics["TST"], "SE": statistics["SE"],
           "WASO_min": statistics["WASO"], "SOL_min": statistics["SOL"],
           "REM_latency_min": statistics["REM_latency"], "unscored_min": statistics["unscored_minutes"]}
    row.update({f"{name}_min": statistics["minutes"][name] for name in STAGE_NAMES})
    if confidence is not None:
        scored = [c for c, s in zip(confidence, stages_json) if s != "?"]
        if scored:
            row["mean_confidence"] = sum(scored) / len(scored)
            row["low_confidence_share"] = sum(c < LOW_CONFIDENCE for c in scored) / len(scored)
    return row


def stage_task(path: str, options: dict) -> tuple:
    """``dreamsync stage`` of one recording: the hypnogram JSON and its summary columns.

    ``options``: ``channel`` (str or None), ``model`` (path of a model file or None),
    ``calibration`` (path of a calibration, :mod:`dreamsync.calibration`, or None).
    """
    from .pipeline import stage_file

    model = None
    if options.get("model"):
        from dsp.model import load_model

        model = load_model(options["model"])
    calibration = None
    if options.get("calibration"):
        from .calibration import read_calibration

        calibration = read_calibration(options["calibration"])
    staged = stage_file(path, channel=options.get("channel"), model=model, calibration=calibration)
    doc = staged.to_json()
    row = _staging_row(doc["stages"], doc["statistics"], doc["confidence"])
    row["duration_h"] = len(doc["stages"]) * doc["epoch_length"] / 3600
    return json.dumps(doc).encode(), row


def detect_task(path: str, options: dict) -> tuple:
    """``dreamsync detect`` of one recording: the events JSON and alarm/authorized counts per kind.

    ``options``: ``channel`` (str or None), ``authorized`` (path of a consent file or None, read
    against each recording's own start time). The staging columns come from the stages the
    detectors used; confidence columns stay empty (detection keeps no confidence).
    """
    from dsp.stages import EPOCH_SECONDS, to_labels
    from dsp.statistics import sleep_statistics

    from .detection import detect_file

    windows = []
    if options.get("authorized"):
        from ingest.edf import read_edf

        from .authorization import load_authorized

        start = None
        if path.lower().endswith((".edf", ".bdf")):  # a raw capture has no clock time of its own
            rec = read_edf(path)
            rec.close()
            start = rec.start
        windows = load_authorized(options["authorized"], start)
    report = detect_file(path, channel=options.get("channel"), authorized=windows)
    row = _staging_row(to_labels(report.stages), sleep_statistics(report.stages, EPOCH_SECONDS), None)
    row["duration_h"] = report.duration / 3600
    row.update(_event_counts(report.events))
    return json.dumps(report.to_json()).encode(), row


def report_task(path: str, options: dict) -> tuple:
    """``dreamsync report`` of one recording: the self-contained HTML page and the columns of both
    staging (with confidence) and detection.

    ``options``: ``channel`` (str or None), ``authorized`` (path of a consent file or None),
    ``calibration`` (path of a calibration or None).
    """
    from dsp.stages import to_labels

    from .report import collect_report, render_report

    data = collect_report(path, authorized=options.get("authorized"), channel=options.get("channel"),
                          calibration=options.get("calibration"))
    r = data.staged.result
    row = _staging_row(to_labels(r.stages), data.statistics, [float(c) for c in r.confidence])
    row["duration_h"] = len(r.stages) * r.epoch_length / 3600
    row.update(_event_counts(data.detection.events))
    return render_report(data).encode("utf-8"), row


def _event_counts(events) -> dict:
    """Alarm and authorized counts per adjustment kind of ``[(event, authorized), ...]``."""
    counts = {}
    for kind in ADJUSTMENT_KINDS:
        counts[f"{kind}_alarms"] = sum(e.kind == kind and not ok for e, ok in events)
        counts[f"{kind}_authorized"] = sum(e.kind == kind and ok for e, ok in events)
    return counts


def hash_task(path: str, options: dict) -> tuple:
    """The content hash of a recording, computed where the task runs: ``(None, {"sha256": hex})``."""
    return None, {"sha256": file_sha256(path)}


register_task("stage", stage_task, ".hypnogram.json")
register_task("detect", detect_task, ".events.json")
register_task("report", report_task, ".report.html")


def execute(job: dict) -> dict:
    """Run one task in a worker; every error of the recording comes back as data.

    Parameters
    ----------
    job : dict
        ``run`` (the task function), ``path``, ``options``, and ``hook`` (tests only, else None).

    Returns
    -------
    dict
        ``status`` ("done" or "failed"), ``error`` (one line or None), ``payload`` (bytes or
        None), ``row`` (summary columns), ``compute_s`` (wall s), ``cpu_s`` (CPU s of this
        process), ``pid``.
    """
    if job.get("hook"):
        _test_hook(job["hook"], job["path"])
    t0, c0 = time.perf_counter(), time.process_time()
    payload, row, error = None, {}, None
    try:
        payload, row = job["run"](job["path"], job["options"])
        row = {k: v.item() if hasattr(v, "item") else v for k, v in row.items()}  # numpy scalars -> Python
    except Exception as err:  # the recording's problem, reported in its row; the run goes on
        error = _error_line(err)
    return {"status": "failed" if error else "done", "error": error, "payload": payload, "row": row,
            "compute_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "pid": os.getpid()}


def _error_line(err: BaseException) -> str:
    from dsp.errors import SignalError
    from ingest.errors import IngestError

    text = " ".join(str(err).split())
    if isinstance(err, OSError) and err.filename and err.strerror:
        text = f"{err.filename}: {err.strerror}"
    if isinstance(err, (IngestError, SignalError, OSError)) and text:
        return text
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _test_hook(spec: str, path: str) -> None:
    """For the tests only: when the driver runs with ``$DREAMSYNC_COHORT_TEST_HOOK`` =
    ``{"trace": DIR, "hold": {NAME: S}}``, each attempt leaves ``DIR/<file name>.<pid>.<ns>`` and the
    first attempt at file NAME waits S seconds (time for a test to kill its worker)."""
    spec = json.loads(spec)
    name = os.path.basename(path)
    trace = pathlib.Path(spec["trace"])
    first = not any(trace.glob(f"{name}.*"))
    (trace / f"{name}.{os.getpid()}.{time.time_ns()}").write_text(path)
    if first and name in spec.get("hold", {}):
        time.sleep(float(spec["hold"][name]))


# ---------------------------------------------------------------- finding and hashing recordings

def find_recordings(spec: str) -> list:
    """Recordings named by ``spec``: a file, a directory (``*.edf``/``*.bdf`` in it and its subfolders,
    except ``*-Hypnogram.edf`` annotation files) or a glob pattern (``**`` crosses folders).

    Returns
    -------
    list of pathlib.Path
        Absolute paths, sorted.

    Raises
    ------
    FileNotFoundError
        Nothing matches.
    """
    p = pathlib.Path(spec).expanduser()
    if p.is_file():
        found = [p]
    elif p.is_dir():
        found = [f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in RECORDING_SUFFIXES
                 and not f.name.lower().endswith(NOT_RECORDINGS)]
    else:
        found = [pathlib.Path(f) for f in glob.glob(str(p), recursive=True) if os.path.isfile(f)]
    if not found:
        what = "no EDF/BDF file in directory" if p.is_dir() else "no file matches"
        raise FileNotFoundError(2, what, spec)
    return sorted({f.resolve() for f in found})


def file_sha256(path, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in chunks of ``chunk_bytes`` (memory stays small)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def settings_digest(kind: str, options: dict) -> str:
    """Key of what a result depends on besides the recording: kind, options, and the content of
    option files (model, consent), and the dreamsync version."""
    described = {"kind": kind, "version": __version__}
    for key, value in sorted(options.items()):
        if key in ("model", "authorized") and value:
            described[key] = file_sha256(value)
        else:
            described[key] = value
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def write_atomically(path: pathlib.Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader sees the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; give it the usual permissions
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


class _HashMemo:
    """SHA-256 of files already hashed, by (path, size, mtime): a rerun does not read unchanged files again."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        try:
            self.known = json.loads(path.read_text())
        except (OSError, ValueError):
            self.known = {}
        self.changed = False

    def lookup(self, file: pathlib.Path) -> tuple:
        """``(stamp, sha256)``: the file's (size, mtime) now and its hash if known for that stamp, else None."""
        st = file.stat()
        stamp = [st.st_size, st.st_mtime_ns]
        entry = self.known.get(str(file))
        return stamp, (entry[2] if entry and entry[:2] == stamp else None)

    def remember(self, file: pathlib.Path, stamp: list, digest: str) -> None:
        self.known[str(file)] = list(stamp) + [digest]
        self.changed = True

    def save(self) -> None:
        if self.changed:
            write_atomically(self.path, json.dumps(self.known).encode())


# ---------------------------------------------------------------- executors: local pool or Dask

class WorkerLost(Exception):
    """The process running a task died (killed, crashed, out of memory) before it answered."""


def _single_threaded() -> None:
    """Start of a local worker, before any numerical library loads: their thread pools get one thread
    (N processes x several threads each would fight over the cores)."""
    for name, value in WORKER_THREADS_ENV.items():
        os.environ.setdefault(name, value)


class LocalExecutor:
    """Processes of this machine (standard library pool; started with spawn, never fork, so no
    thread or lock of the driver is copied into a worker).

    Only ``workers`` tasks are given out at a time, so every task in the pool is running: when a
    worker dies and the pool breaks, the tasks lost are exactly the ones that were running.
    """

    def __init__(self, workers: int):
        import multiprocessing

        self._context = multiprocessing.get_context("spawn")
        self.capacity = max(1, int(workers))
        self.description = f"{self.capacity} local worker process(es)"
        self._generation = 0
        self._pool = self._new_pool()
        self._born: dict = {}

    def _new_pool(self):
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(max_workers=self.capacity, mp_context=self._context,
                                   initializer=_single_threaded)

    def submit(self, job: dict):
        future = self._pool.submit(execute, job)
        self._born[future] = self._generation
        return future

    def wait(self, futures) -> set:
        from concurrent.futures import FIRST_COMPLETED, wait

        return wait(futures, return_when=FIRST_COMPLETED).done

    def result(self, future) -> dict:
        from concurrent.futures.process import BrokenProcessPool

        generation = self._born.pop(future)
        try:
            return future.result()
        except BrokenProcessPool:
            if generation == self._generation:  # the first news of this break: a fresh pool for the rest
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._generation += 1
                self._pool = self._new_pool()
            raise WorkerLost("its worker process died (killed or crashed)") from None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """The workers of a Dask distributed cluster, through ``distributed.Client(address)``.

    Every worker needs dreamsync installed and the recordings at the same paths (a shared file
    system); results come back to this process, so the output directory need not be shared.
    """

    def __init__(self, scheduler, *, timeout: float = 20.0):
        try:
            from distributed import Client
        except ImportError:
            raise ImportError("a Dask cluster needs dask[distributed]: pip install 'dreamsync[cluster]'") from None
        self._own = isinstance(scheduler, str)
        if self._own:
            try:
                self.client = Client(scheduler, timeout=timeout)
            except (OSError, TimeoutError) as err:
                raise ConnectionError(f"cannot reach the Dask scheduler at {scheduler}: "
                                      f"{' '.join(str(err).split())}") from None
        else:  # a distributed.Client the caller made and will close
            self.client = scheduler
        nthreads = self.client.nthreads()
        threads = sum(nthreads.values())
        # enough queued that no worker idles, few enough that the driver hashes as it goes
        self.capacity = max(2, 2 * threads)
        self.description = f"Dask cluster at {self.client.scheduler.address} ({len(nthreads)} workers, " \
                           f"{threads} threads)"

    def submit(self, job: dict):
        return self.client.submit(execute, job, pure=False, key=f"dreamsync-{os.path.basename(job['path'])}-"
                                                                 f"{time.time_ns()}")

    def wait(self, futures) -> set:
        from distributed import wait

        return set(wait(list(futures), return_when="FIRST_COMPLETED").done)

    def result(self, future) -> dict:
        from distributed import KilledWorker

        try:
            return future.result()
        except KilledWorker as err:
            raise WorkerLost(f"its workers died ({' '.join(str(err).split())})") from None
        finally:
            future.release()

    def close(self) -> None:
        if self._own:
            self.client.close()


# ---------------------------------------------------------------- the driver

@dataclass
class CohortResult:
    """What :func:`run_cohort` did.

    Attributes
    ----------
    rows : list of dict
        One summary row per recording (columns :data:`COLUMNS`), in input order.
    summary_csv : pathlib.Path
    summary_parquet : pathlib.Path or None
        None when pyarrow is not installed.
    seconds : float
        Wall time of the run.
    """

    rows: list
    summary_csv: pathlib.Path
    summary_parquet: pathlib.Path | None
    seconds: float = 0.0

    def count(self, status: str) -> int:
        """Rows with ``status`` ("done", "skipped" or "failed")."""
        return sum(r["status"] == status for r in self.rows)

    @property
    def failed(self) -> list:
        """Rows of the recordings that failed."""
        return [r for r in self.rows if r["status"] == "failed"]


@dataclass
class _Pending:
    """A recording on its way: its job (hashing it, or the task), its cache key once known, and how
    often a worker was lost under it."""

    index: int
    path: pathlib.Path
    job: dict
    sha256: str | None = None  # None while the job is hashing the file
    stamp: list = field(default_factory=list)  # (size, mtime) when the hash job was given out
    lost: int = 0
    copies: list = field(default_factory=list)  # indices of identical files met meanwhile


def run_cohort(inputs, out_dir, kind: str = "stage", *, options: dict | None = None, workers: int | None = None,
               scheduler: str | None = None, retries: int = 2,
               progress: Callable[[str], None] | None = None) -> CohortResult:
    """Run one kind of task over many recordings, resumably.

    Parameters
    ----------
    inputs : str or path, or a sequence of them
        Files, directories or glob patterns (see :func:`find_recordings`).
    out_dir : str or path
        Output directory (created): per-recording results, summary table, cache.
    kind : str
        A registered task: ``"stage"``, ``"detect"`` (see :data:`TASKS`).
    options : dict, optional
        Options of the task (``channel``, ``model``, ``authorized``); part of the cache key.
    workers : int, optional
        Local worker processes (default: ``os.cpu_count()``); ignored with ``scheduler``.
    scheduler : str, optional
        Address of a Dask scheduler, e.g. ``"tcp://10.0.0.5:8786"``, or a ``distributed.Client``.
    retries : int
        Times a recording is submitted again after its worker died; then it is a failed row.
    progress : callable, optional
        Receives one line per recording finished (with the ETA) and a line when the run starts.

    Returns
    -------
    CohortResult

    Raises
    ------
    FileNotFoundError
        An input matches no file.
    KeyError
        Unknown ``kind``.
    ConnectionError
        The Dask scheduler cannot be reached.

    Notes
    -----
    Local workers are started with ``spawn``: a script that calls this must do so under
    ``if __name__ == "__main__":``, as for any multiprocessing pool. Summary rows of skipped
    recordings carry the figures (``compute_s``, ``cpu_s``) of the run that computed them.
    """
    if kind not in TASKS:
        raise KeyError(f"unknown task kind {kind!r}; known: {', '.join(TASKS)}")
    task, options = TASKS[kind], dict(options or {})
    for key in ("model", "authorized"):  # workers may run elsewhere: absolute paths
        if options.get(key):
            options[key] = str(pathlib.Path(options[key]).resolve())
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / CACHE_DIR / kind / settings_digest(kind, options)
    memo = _HashMemo(out / CACHE_DIR / "sha256.json")
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files = sorted({f for spec in inputs for f in find_recordings(str(spec))})
    names = _result_names(files, task.suffix)
    say = progress or (lambda line: None)
    t_start = time.perf_counter()
    rows: list = [None] * len(files)
    if scheduler is not None:
        executor = DaskExecutor(scheduler)
    else:
        executor = LocalExecutor(workers or os.cpu_count() or 1)
    say(f"{kind}: {len(files)} recording(s) on {executor.description}; results in {out}")

    running: dict = {}  # future -> _Pending
    by_sha: dict = {}  # sha256 -> _Pending of this run
    finished, computed = 0, 0
    queue = iter(range(len(files)))
    hook = os.environ.get(TEST_HOOK_ENV)

    def job_of(file: pathlib.Path) -> dict:
        return {"run": task.run, "path": str(file), "options": options, "hook": hook}

    def finish(i: int, row: dict) -> None:
        nonlocal finished, computed
        rows[i] = row
        finished += 1
        if row["status"] != "skipped":
            computed += 1
            elapsed = time.perf_counter() - t_start
            left = len(files) - finished
            eta = f", ETA {_duration(elapsed / computed * left)}" if left else ""
            what = row["error"] if row["status"] == "failed" else f"{row['compute_s']:.1f} s"
            say(f"[{finished}/{len(files)}] {row['status']} {files[i].name} ({what}){eta}")

    def decide(i: int, sha: str) -> None:
        """A recording whose hash is known: skipped (done before, or a copy of one in this run) or submitted."""
        if sha in by_sha:  # an identical copy already in this run
            by_sha[sha].copies.append(i)
            return
        entry = _cached(cache, out, sha)
        if entry is not None:
            finish(i, {**entry["row"], "file": str(files[i]), "status": "skipped", "error": None})
            return
        pending = by_sha[sha] = _Pending(i, files[i], job_of(files[i]), sha)
        running[executor.submit(pending.job)] = pending

    def take_next() -> bool:
        """Give out the next recording's job: hashing it in a worker when its hash is not known (the
        workers read the bytes, in parallel, near the data), else its task unless skipped.
        False when no recording is left."""
        for i in queue:
            file = files[i]
            try:
                stamp, sha = memo.lookup(file)
            except OSError as err:
                finish(i, _row(file, None, "failed", _error_line(err)))
                continue
            if sha is None:
                pending = _Pending(i, file, {"run": hash_task, "path": str(file), "options": {}}, stamp=stamp)
                running[executor.submit(pending.job)] = pending
                return True
            before = len(running)
            decide(i, sha)
            if len(running) > before:
                return True
        return False

    try:
        while len(running) < executor.capacity and take_next():
            pass
        while running:
            for future in executor.wait(list(running)):
                pending = running.pop(future)
                try:
                    outcome = executor.result(future)
                except WorkerLost as err:
                    pending.lost += 1
                    if pending.lost <= retries:
                        running[executor.submit(pending.job)] = pending
                        continue
                    outcome = {"status": "failed", "error": f"{err}; gave up after {pending.lost} attempt(s)",
                               "payload": None, "row": {}, "compute_s": None, "cpu_s": None}
                except Exception as err:  # the cluster could not run the task at all (e.g. a worker without dreamsync)
                    outcome = {"status": "failed", "error": _error_line(err), "payload": None, "row": {},
                               "compute_s": None, "cpu_s": None}
                if pending.sha256 is None and outcome["status"] == "done":  # hashed: now the task, or a skip
                    memo.remember(pending.path, pending.stamp, outcome["row"]["sha256"])
                    decide(pending.index, outcome["row"]["sha256"])
                    continue
                row = _complete(pending, outcome, out / names[pending.index], cache, out)
                finish(pending.index, row)
                for i in pending.copies:
                    finish(i, {**row, "file": str(files[i]),
                               "status": "skipped" if row["status"] == "done" else "failed",
                               "compute_s": None, "cpu_s": None})
            while len(running) < executor.capacity and take_next():
                pass
    finally:
        memo.save()
        executor.close()
        # an interrupted run still leaves the summary of what finished
        csv_path, parquet_path = write_summary([r for r in rows if r is not None], out / f"summary-{kind}")
    return CohortResult(rows, csv_path, parquet_path, time.perf_counter() - t_start)


def _complete(pending: _Pending, outcome: dict, result_path: pathlib.Path, cache: pathlib.Path,
              out: pathlib.Path) -> dict:
    """Write a finished recording's result and cache entry (result first: an entry means it exists)."""
    row = _row(pending.path, pending.sha256, outcome["status"], outcome["error"])
    row.update(outcome["row"])
    row.update(compute_s=outcome["compute_s"], cpu_s=outcome["cpu_s"], attempts=pending.lost + 1)
    if outcome["status"] == "done":
        write_atomically(result_path, outcome["payload"])
        row["result"] = result_path.name
        write_atomically(cache / f"{pending.sha256}.json", json.dumps({"row": row}).encode())
    return row


def _cached(cache: pathlib.Path, out: pathlib.Path, sha: str) -> dict | None:
    """The cache entry of a recording done with these settings, if its result file is still there."""
    try:
        entry = json.loads((cache / f"{sha}.json").read_text())
        return entry if (out / entry["row"]["result"]).is_file() else None
    except (OSError, ValueError, KeyError, TypeError):  # absent, or damaged: computed again
        return None


def _row(file, sha, status: str, error: str | None) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(file=str(file), sha256=sha, status=status, error=error)
    return row


def _result_names(files: list, suffix: str) -> list:
    """Result file names: the recording's stem, with a hash of its path when stems repeat."""
    stems = [f.stem for f in files]
    repeated = {s for s in stems if stems.count(s) > 1}
    return [f"{s}-{hashlib.sha256(str(f).encode()).hexdigest()[:8]}{suffix}" if s in repeated else f"{s}{suffix}"
            for s, f in zip(stems, files)]


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def write_summary(rows: list, stem) -> tuple:
    """Write the summary table as ``STEM.csv``, and ``STEM.parquet`` when pyarrow is installed.

    Parameters
    ----------
    rows : list of dict
        Rows with the keys of :data:`COLUMNS` (missing ones are empty).
    stem : str or path
        Path without suffix.

    Returns
    -------
    (pathlib.Path, pathlib.Path or None)
        The CSV and the Parquet file (None without pyarrow).
    """
    import io

    stem = pathlib.Path(stem)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else _rounded(row.get(k))) for k in COLUMNS})
    csv_path = stem.with_name(stem.name + ".csv")
    write_atomically(csv_path, text.getvalue().encode())
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return csv_path, None
    types = {k: pa.string() if k in _TEXT_COLUMNS else pa.int64() if k in _INT_COLUMNS else pa.float64()
             for k in COLUMNS}
    schema = pa.schema([(k, types[k]) for k in COLUMNS])
    table = pa.Table.from_pylist([{k: row.get(k) for k in COLUMNS} for row in rows], schema=schema)
    parquet_path = stem.with_name(stem.name + ".parquet")
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    write_atomically(parquet_path, buffer.getvalue().to_pybytes())
    return csv_path, parquet_path


def _rounded(value):
    return round(value, 4) if isinstance(value, float) else value


def read_summary(path) -> list:
    """Rows of a summary CSV as dicts of strings (empty string for a missing value)."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


__all__ = ["COLUMNS", "CohortResult", "DaskExecutor", "LocalExecutor", "TASKS", "TaskKind", "WorkerLost",
           "execute", "file_sha256", "find_recordings", "read_summary", "register_task", "run_cohort",
           "settings_digest", "write_atomically", "write_summary"]

