"""Public-dataset downloads against a local HTTP server laid out like PhysioNet's Sleep-EDF Expanded.

The server is a real ``http.server.ThreadingHTTPServer`` on 127.0.0.1 serving tiny EDF files made
with edfio, with a ``SHA256SUMS.txt`` index like PhysioNet's; nothing goes to the internet.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import socket
import threading

import pytest

from dreamsync.cli import main
from ingest import datasets
from ingest.datasets import DATASETS, fetch, parse_nights, parse_ranges, parse_subjects, sleep_edf_pairs
from ingest.errors import DatasetError, DownloadError
from ingest.hypnograms import read_hypnogram

# (recording name, hypnogram letters, stages): subject 0 and 1 have both nights, subject 13 only its
# first (as on PhysioNet), subject 39 none; the suffix letters vary like the real ones (EC, EH).
RECORDINGS = [("SC4001E", "C", "W12R"), ("SC4002E", "C", "W23W"), ("SC4011E", "H", "W122"),
              ("SC4012E", "C", "WR1W"), ("SC4131E", "C", "W34R")]
OTHER_FILES = ["sleep-telemetry/ST7011J0-PSG.edf", "sleep-telemetry/ST7011JP-Hypnogram.edf", "RECORDS",
               "SC-subjects.xls"]


def _files_of(name: str, letter: str) -> list:
    return [f"sleep-cassette/{name}0-PSG.edf", f"sleep-cassette/{name}{letter}-Hypnogram.edf"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A directory laid out like https://physionet.org/files/sleep-edfx/1.0.0/ with tiny files."""
    import edfio
    import numpy as np

    root = tmp_path_factory.mktemp("physionet")
    (root / "sleep-cassette").mkdir()
    (root / "sleep-telemetry").mkdir()
    rng = np.random.default_rng(5)
    for name, letter, stages in RECORDINGS:
        psg, hypnogram = _files_of(name, letter)
        signal = edfio.EdfSignal(rng.normal(0, 20, 100 * 30 * len(stages)), sampling_frequency=100,
                                 label="EEG Fpz-Cz", physical_range=(-500, 500))
        edfio.Edf([signal]).write(str(root / psg))
        notes = [edfio.EdfAnnotation(30 * i, 30, f"Sleep stage {s}") for i, s in enumerate(stages)]
        edfio.Edf([], annotations=notes).write(str(root / hypnogram))
    for other in OTHER_FILES:
        (root / other).write_bytes(other.encode() * 10)
    lines = [f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(root).as_posix()}"
             for path in sorted(root.rglob("*")) if path.is_file()]
    (root / "SHA256SUMS.txt").write_text("\n".join(lines) + "\n")
    return root


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the tree, notes every request, and sends garbage once for paths in ``corrupt_once``."""

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path in self.server.corrupt_once:
            self.server.corrupt_once.discard(self.path)
            body = b"not the file" * 100
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args):  # keep the test output clean
        pass


class _Server:
    def __init__(self, root):
        self.root = root
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
        self.httpd.requests, self.httpd.corrupt_once = [], set()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def requests(self) -> list:
        return self.httpd.requests

    def file_requests(self) -> list:
        return [path for path in self.requests if path.endswith(".edf")]


@pytest.fixture
def server(tree, tmp_path_factory):
    """The tree (a private copy, so a test may damage it) served on 127.0.0.1; always shut down."""
    root = tmp_path_factory.mktemp("served") / "sleep-edfx"
    shutil.copytree(tree, root)
    srv = _Server(root)
    srv.thread.start()
    try:
        yield srv
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()
        srv.thread.join(timeout=5)


@pytest.fixture
def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def _no_part_files(directory) -> bool:
    return not list(directory.rglob("*.part"))


# --- subject and night lists ---------------------------------------------------------------------

def test_subject_ranges_are_parsed_sorted_and_without_repeats():
    assert parse_subjects("0-9") == list(range(10))
    assert parse_subjects("0,3,5-7") == [0, 3, 5, 6, 7]
    assert parse_subjects(" 7, 5-7 ,82") == [5, 6, 7, 82]
    assert parse_nights("1,2") == [1, 2] and parse_nights("2") == [2]
    assert parse_ranges("3-3", 0, 5) == [3]


@pytest.mark.parametrize("text, words", [("", "not a subject list"), ("a", "not a subject list"),
                                         ("1--2", "not a subject list"), ("5-3", "backwards"),
                                         ("0-90", "numbered 0 to 82"), ("83", "numbered 0 to 82")])
def test_bad_subject_lists_are_refused_with_the_reason(text, words):
    with pytest.raises(DatasetError, match=words):
        parse_subjects(text)


def test_a_night_outside_the_dataset_is_refused():
    with pytest.raises(DatasetError, match="nights are numbered 1 to 2"):
        parse_nights("3")
    with pytest.raises(DatasetError, match="no night 3"):
        fetch("sleep-edf", [0], "unused", nights=[3])


def test_an_unknown_dataset_or_a_bad_url_is_refused_before_any_request(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'mass'.*sleep-edf"):
        fetch("mass", [0], tmp_path)
    with pytest.raises(DatasetError, match="not an http"):
        fetch("sleep-edf", [0], tmp_path, base_url="ftp://example.org/sleep/")
    assert list(tmp_path.iterdir()) == []


# --- downloads -----------------------------------------------------------------------------------

def test_fetch_gets_and_verifies_exactly_the_files_of_the_asked_subjects(server, tmp_path):
    events = []
    paths = fetch("sleep-edf", "0-1", tmp_path / "data", base_url=server.url, progress=events.append)
    expected = [f for name, letter, _ in RECORDINGS[:4] for f in _files_of(name, letter)]
    assert paths == [tmp_path / "data" / f for f in expected]
    for relative, path in zip(expected, paths):
        assert path.read_bytes() == (server.root / relative).read_bytes()
    assert sorted(server.file_requests()) == sorted("/" + f for f in expected)  # no telemetry, no 13
    assert (tmp_path / "data" / "SHA256SUMS.txt").read_bytes() == (server.root / "SHA256SUMS.txt").read_bytes()
    assert _no_part_files(tmp_path / "data")
    assert [e.file for e in events if e.kind == "done"] == expected
    assert read_hypnogram(paths[1]) == ["W", "N1", "N2", "REM"]  # the files are usable EDF+


def test_fetch_of_one_night_gets_only_that_night(server, tmp_path):
    paths = fetch("sleep-edf", [0, 1], tmp_path, nights="2", base_url=server.url)
    assert [p.name for p in paths] == ["SC4002E0-PSG.edf", "SC4002EC-Hypnogram.edf",
                                       "SC4012E0-PSG.edf", "SC4012EC-Hypnogram.edf"]


def test_a_rerun_downloads_nothing_and_a_damaged_file_is_fetched_again(server, tmp_path):
    first = fetch("sleep-edf", "0-1", tmp_path, base_url=server.url)
    server.requests.clear()
    events = []
    again = fetch("sleep-edf", "0-1", tmp_path, base_url=server.url, progress=events.append)
    assert again == first
    assert server.requests == []  # not even the index: a published version never changes
    assert {e.kind for e in events} == {"present"} and len(events) == len(first)

    first[2].write_bytes(first[2].read_bytes()[:-10])  # a truncated local copy
    fetch("sleep-edf", "0-1", tmp_path, base_url=server.url)
    assert server.file_requests() == ["/sleep-cassette/SC4002E0-PSG.edf"]
    assert first[2].read_bytes() == (server.root / "sleep-cassette/SC4002E0-PSG.edf").read_bytes()


def test_a_corrupt_file_on_the_server_fails_the_checksum_and_leaves_nothing(server, tmp_path):
    damaged = server.root / "sleep-cassette" / "SC4011E0-PSG.edf"
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"!")
    with pytest.raises(DownloadError, match=r"SC4011E0-PSG\.edf sent a file whose SHA-256 differs.*twice"):
        fetch("sleep-edf", "0-1", tmp_path, base_url=server.url)
    assert server.file_requests().count("/sleep-cassette/SC4011E0-PSG.edf") == 2  # tried once more
    assert not (tmp_path / "sleep-cassette" / "SC4011E0-PSG.edf").exists()
    assert _no_part_files(tmp_path)


def test_one_corrupt_transfer_is_retried_and_then_succeeds(server, tmp_path):
    server.httpd.corrupt_once.add("/sleep-cassette/SC4001EC-Hypnogram.edf")
    events = []
    paths = fetch("sleep-edf", [0], tmp_path, nights=[1], base_url=server.url, progress=events.append)
    assert paths[1].read_bytes() == (server.root / "sleep-cassette/SC4001EC-Hypnogram.edf").read_bytes()
    retries = [e for e in events if e.kind == "retry"]
    assert len(retries) == 1 and "SHA-256 differs" in retries[0].message


def test_a_file_missing_on_the_server_gives_the_http_error_without_retrying(server, tmp_path):
    (server.root / "sleep-cassette" / "SC4002EC-Hypnogram.edf").unlink()
    with pytest.raises(DownloadError, match=r"SC4002EC-Hypnogram\.edf answered HTTP 404"):
        fetch("sleep-edf", [0], tmp_path, base_url=server.url)
    assert server.file_requests().count("/sleep-cassette/SC4002EC-Hypnogram.edf") == 1
    assert _no_part_files(tmp_path)


def test_an_unreachable_server_is_one_clear_error_naming_the_url(closed_port_url, tmp_path):
    target = tmp_path / "data"
    with pytest.raises(DownloadError) as caught:
        fetch("sleep-edf", [0], target, base_url=closed_port_url)
    message = str(caught.value)
    assert f"{closed_port_url}SHA256SUMS.txt" in message and "refused" in message and "\n" not in message
    assert not target.exists()


def test_a_subject_never_published_is_an_input_error_and_a_missing_night_a_note(server, tmp_path):
    with pytest.raises(DatasetError, match="no recording of subject 39 .*SHA256SUMS.txt") as caught:
        fetch("sleep-edf", [0, 39], tmp_path, base_url=server.url)
    assert not isinstance(caught.value, DownloadError)
    assert server.file_requests() == []
    events = []
    paths = fetch("sleep-edf", [13], tmp_path, base_url=server.url, progress=events.append)
    assert [p.name for p in paths] == ["SC4131E0-PSG.edf", "SC4131EC-Hypnogram.edf"]
    assert [e.message for e in events if e.kind == "note"] == ["subject 13 has no night 2 in sleep-edf; skipped"]


def test_the_environment_variable_points_to_a_mirror_and_base_url_overrides_it(server, closed_port_url,
                                                                               tmp_path, monkeypatch):
    monkeypatch.setenv("DREAMSYNC_SLEEP_EDF_URL", server.url.rstrip("/"))  # a missing final slash is fine
    assert len(fetch("sleep-edf", [0], tmp_path / "a", nights=[1])) == 2
    with pytest.raises(DownloadError, match="refused"):
        fetch("sleep-edf", [0], tmp_path / "b", base_url=closed_port_url)


def test_an_interrupted_download_leaves_no_partial_file(server, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "CHUNK", 1024)

    def interrupt(event):
        if event.kind == "bytes":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetch("sleep-edf", [0], tmp_path, base_url=server.url, progress=interrupt)
    assert _no_part_files(tmp_path) and not list(tmp_path.rglob("*.edf"))


# --- pairing -------------------------------------------------------------------------------------

def test_downloaded_recordings_pair_with_their_hypnograms(server, tmp_path):
    fetch("sleep-edf", "0-1,13", tmp_path, base_url=server.url)
    pairs = sleep_edf_pairs(tmp_path)
    assert [(psg.name, hyp.name) for psg, hyp in pairs] == [
        ("SC4001E0-PSG.edf", "SC4001EC-Hypnogram.edf"), ("SC4002E0-PSG.edf", "SC4002EC-Hypnogram.edf"),
        ("SC4011E0-PSG.edf", "SC4011EH-Hypnogram.edf"), ("SC4012E0-PSG.edf", "SC4012EC-Hypnogram.edf"),
        ("SC4131E0-PSG.edf", "SC4131EC-Hypnogram.edf")]
    assert all(psg.parent == tmp_path / "sleep-cassette" for psg, _ in pairs)


def test_pairing_skips_orphans_and_other_files_and_refuses_duplicates(tmp_path):
    for name in ["SC4001E0-PSG.edf", "SC4001EC-Hypnogram.edf", "SC4021E0-PSG.edf", "SC4031EJ-Hypnogram.edf",
                 "night.edf", "SC4001E0-PSG.edf.part", "notes.txt"]:
        (tmp_path / name).write_bytes(b"0")
    assert sleep_edf_pairs(tmp_path) == [(tmp_path / "SC4001E0-PSG.edf", tmp_path / "SC4001EC-Hypnogram.edf")]
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "SC4001E0-PSG.edf").write_bytes(b"0")
    with pytest.raises(DatasetError, match="two psg files of recording SC4001E"):
        sleep_edf_pairs(tmp_path)
    with pytest.raises(DatasetError, match="no such directory"):
        sleep_edf_pairs(tmp_path / "absent")
    assert sleep_edf_pairs(tmp_path / "copy") == []


# --- command line --------------------------------------------------------------------------------

def test_cli_fetch_downloads_shows_progress_per_file_and_sums_up(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(datasets, "CHUNK", 512)  # many chunks per file, to see the progress lines thinned out
    out = tmp_path / "data"
    argv = ["datasets", "fetch", "sleep-edf", "--subjects", "0", "--dir", str(out), "--base-url", server.url]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert (out / "sleep-cassette" / "SC4002EC-Hypnogram.edf").is_file()
    psg_lines = [line for line in captured.err.splitlines() if "SC4001E0-PSG.edf" in line]
    n_chunks = -(-(server.root / "sleep-cassette" / "SC4001E0-PSG.edf").stat().st_size // 512)
    assert n_chunks > 8 and len(psg_lines) == 4  # 25, 50, 75 % and done, not one line per chunk
    assert "(50 %)" in psg_lines[1] and psg_lines[-1].endswith("downloaded, checksum ok")
    assert captured.out.splitlines() == [
        f"sleep-edf: 4 files in {out}, every SHA-256 verified: 4 downloaded "
        f"({captured.out.split('(')[1].split(')')[0]}), 0 already present"]

    assert main(argv + ["--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "0 downloaded, 4 already present" in captured.out


@pytest.mark.parametrize("case, code, words", [
    ("unreachable", 3, "download error: cannot download http://127.0.0.1:"),
    ("corrupt", 3, "download error: http://127.0.0.1:"),
    ("missing subject", 2, "error: sleep-edf publishes no recording of subject 39"),
    ("bad subjects", 2, "error: subject 200 is out of range"),
])
def test_cli_errors_are_one_line_with_the_exit_code(case, code, words, server, closed_port_url, tmp_path, capsys):
    url = closed_port_url if case == "unreachable" else server.url
    subjects = {"missing subject": "39", "bad subjects": "0-200"}.get(case, "1")
    if case == "corrupt":
        (server.root / "sleep-cassette" / "SC4011E0-PSG.edf").write_bytes(b"0" * 300)
    argv = ["datasets", "fetch", "sleep-edf", "--subjects", subjects, "--dir", str(tmp_path), "--base-url", url]
    assert main(argv + ["--quiet"]) == code
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"dreamsync: {words}"), err
    assert _no_part_files(tmp_path)
    assert main(argv) == code  # with progress lines, the error is still one line, the last, no traceback
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(f"dreamsync: {words}") and "Traceback" not in err


def test_cli_dataset_choices_are_the_registry():
    from dreamsync.cli import _build_parser

    fetch_parser = _build_parser()._subparsers._group_actions[0].choices["datasets"] \
        ._subparsers._group_actions[0].choices["fetch"]
    choices = next(a.choices for a in fetch_parser._actions if a.dest == "dataset")
    assert tuple(choices) == tuple(DATASETS)
