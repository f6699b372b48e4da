"""Public sleep datasets: where they live, which files a subject has, and a verified download.

The one dataset so far is the sleep-cassette part of the Sleep-EDF Database Expanded (Kemp et al.
2000, PhysioNet, doi:10.13026/C2X676; licence and citation at
https://physionet.org/content/sleep-edfx/1.0.0/): 153 nights of 78 healthy subjects, each night a
``SC4ssN?0-PSG.edf`` recording and a ``SC4ssN??-Hypnogram.edf`` with R&K stages (``ss`` the subject
00-82, ``N`` the night 1 or 2).

PhysioNet publishes ``SHA256SUMS.txt`` at the root of each dataset version, one
``<sha256>  <relative path>`` line per file. It serves here as both the index (a subject's files are
looked up in it, since the letters after the night vary) and the checksums. A dataset version is
never changed once published, so the index is kept beside the files and reused: a second run with
every file present makes no request at all.

Files are written to ``<directory>/<path in the index>`` (the server's layout), streamed to
``<name>.part`` and renamed only once their SHA-256 matches, so a file with the final name is
always complete, and running again after an interruption resumes with the first incomplete file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pathlib
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Callable, Iterable

from .errors import DatasetError, DownloadError

#: Seconds to wait for the server before a connection or read counts as failed.
TIMEOUT = 60.0
#: Bytes read from the network at a time (and the granularity of progress reports).
CHUNK = 256 * 1024
_USER_AGENT = "dreamsync-datasets/1 (+urllib)"
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class Dataset:
    """Where a public dataset lives and how its index names a subject's files.

    Attributes
    ----------
    name : str
        Name on the command line, e.g. ``"sleep-edf"``.
    title : str
        Human-readable name, version and licence.
    base_url : str
        URL of the dataset's root (ends with ``/``); the index and every file are relative to it.
    index : str
        File at ``base_url`` listing ``<sha256>  <relative path>`` for every file.
    url_variable : str
        Environment variable that overrides ``base_url`` (for mirrors and tests).
    subjects : range
        Subject numbers the dataset's scheme allows (not all of them need be published).
    nights : tuple of int
        Night numbers the scheme allows.
    pattern : re.Pattern
        Matches a relative path in the index that belongs to a recording, with named groups
        ``subject``, ``night`` and ``kind``.
    kinds : tuple of str
        Values of ``kind`` a night needs to be usable (a recording and its hypnogram).
    """

    name: str
    title: str
    base_url: str
    index: str
    url_variable: str
    subjects: range
    nights: tuple
    pattern: re.Pattern
    kinds: tuple

    def select(self, paths: Iterable[str], subjects: Iterable[int], nights: Iterable[int]) -> dict:
        """The index entries of each requested night that has every file kind.

        Parameters
        ----------
        paths : iterable of str
            Relative paths from the index.
        subjects, nights : iterable of int
            Subject and night numbers wanted.

        Returns
        -------
        dict
            ``{(subject, night): [path, ...]}`` in :attr:`kinds` order, only for complete nights.
        """
        wanted_subjects, wanted_nights = set(subjects), set(nights)
        found: dict = {}
        for path in paths:
            match = self.pattern.match(path)
            if not match or match["kind"] not in self.kinds:
                continue
            key = (int(match["subject"]), int(match["night"]))
            if key[0] in wanted_subjects and key[1] in wanted_nights:
                found.setdefault(key, {})[match["kind"]] = path
        return {key: [files[kind] for kind in self.kinds] for key, files in sorted(found.items())
                if all(kind in files for kind in self.kinds)}


DATASETS = {
    "sleep-edf": Dataset(
        name="sleep-edf",
        title="Sleep-EDF Database Expanded 1.0.0, sleep cassette (PhysioNet, doi:10.13026/C2X676)",
        base_url="https://physionet.org/files/sleep-edfx/1.0.0/",
        index="SHA256SUMS.txt",
        url_variable="DREAMSYNC_SLEEP_EDF_URL",
        subjects=range(0, 83),
        nights=(1, 2),
        pattern=re.compile(r"^sleep-cassette/SC4(?P<subject>\d\d)(?P<night>[12])[A-Z0-9]{2}"
                           r"-(?P<kind>PSG|Hypnogram)\.edf$"),
        kinds=("PSG", "Hypnogram"),
    ),
}


@dataclass(frozen=True)
class FetchEvent:
    """One step of :func:`fetch`, for a progress display.

    Attributes
    ----------
    kind : str
        ``"present"`` (already on disk with the right checksum), ``"start"`` (a download begins),
        ``"bytes"`` (more bytes arrived), ``"done"`` (downloaded and verified), ``"retry"`` (an
        attempt failed, see ``message``) or ``"note"`` (something skipped, see ``message``).
    file : str
        Relative path of the file in the dataset (empty for a note about no one file).
    done : int
        Bytes received so far (``"bytes"``, ``"done"``) or the file's size (``"present"``).
    total : int or None
        Size in bytes the server announced, if it did.
    message : str
        What went wrong or was skipped (``"retry"``, ``"note"``).
    """

    kind: str
    file: str = ""
    done: int = 0
    total: int | None = None
    message: str = ""


def parse_ranges(text: str, lowest: int, highest: int, what: str = "subject") -> list:
    """Numbers in a list of ranges such as ``"0-9"`` or ``"0,3,5-7"``.

    Parameters
    ----------
    text : str
        Comma-separated numbers and inclusive ranges ``a-b``; spaces are ignored.
    lowest, highest : int
        Allowed numbers, inclusive.
    what : str, optional
        What the numbers are, for the error message.

    Returns
    -------
    list of int
        Sorted, without repeats.

    Raises
    ------
    DatasetError
        If the text is not such a list, a range runs backwards, or a number is out of bounds.
    """
    numbers: set = set()
    for part in text.replace(" ", "").split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise DatasetError(f"not a {what} list: {text!r} (examples: 0-9, 0,3,5-7)")
        first = int(match[1])
        last = int(match[2]) if match[2] is not None else first
        if last < first:
            raise DatasetError(f"{what} range {part!r} runs backwards")
        outside = [n for n in (first, last) if not lowest <= n <= highest]
        if outside:
            raise DatasetError(f"{what} {outside[0]} is out of range: {what}s are numbered {lowest} to {highest}")
        numbers.update(range(first, last + 1))
    return sorted(numbers)


def parse_subjects(text: str, name: str = "sleep-edf") -> list:
    """Subject numbers of dataset ``name`` in ``text`` (see :func:`parse_ranges`)."""
    dataset = dataset_named(name)
    return parse_ranges(text, dataset.subjects[0], dataset.subjects[-1], "subject")


def parse_nights(text: str, name: str = "sleep-edf") -> list:
    """Night numbers of dataset ``name`` in ``text``, e.g. ``"1,2"`` or ``"2"``."""
    dataset = dataset_named(name)
    return parse_ranges(text, min(dataset.nights), max(dataset.nights), "night")


def dataset_named(name: str) -> Dataset:
    """The registry entry of ``name``; raises :class:`DatasetError` for an unknown name."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None


def resolve_base_url(name: str, base_url: str | None = None) -> str:
    """Root URL to download ``name`` from: ``base_url``, else the dataset's variable, else the default.

    Raises
    ------
    DatasetError
        If the URL is not ``http``, ``https`` or ``file``.
    """
    dataset = dataset_named(name)
    url = base_url or os.environ.get(dataset.url_variable) or dataset.base_url
    if urllib.parse.urlsplit(url).scheme not in ("http", "https", "file"):
        raise DatasetError(f"not an http(s) or file URL: {url!r}")
    return url if url.endswith("/") else url + "/"


def fetch(name: str, subjects, directory, *, nights=None, base_url: str | None = None,
          progress: Callable[[FetchEvent], None] | None = None) -> list:
    """Download the files of some subjects of a public dataset, verified against its SHA-256 index.

    Files already in ``directory`` with the right checksum are kept as they are, so a second run
    downloads nothing. A failed or corrupt download is tried once more before giving up; a failed
    one leaves nothing behind (no ``.part`` file, no file of the final name).

    Parameters
    ----------
    name : str
        Dataset name, a key of :data:`DATASETS` (``"sleep-edf"``).
    subjects : str or iterable of int
        Subject numbers, or a range list such as ``"0-9"`` (see :func:`parse_ranges`).
    directory : str or PathLike
        Where to put the files (created if missing), in the server's layout, with the index.
    nights : str or iterable of int, optional
        Night numbers, by default every night of the dataset.
    base_url : str, optional
        Root URL of a mirror; by default the environment variable of the dataset
        (``DREAMSYNC_SLEEP_EDF_URL``), else the publisher's.
    progress : callable, optional
        Called with a :class:`FetchEvent` at each step.

    Returns
    -------
    list of pathlib.Path
        Local paths of the files of each (subject, night), in subject and night order, the
        recording before its hypnogram.

    Raises
    ------
    DatasetError
        For an unknown dataset, a bad subject or night list, or subjects of which none of the asked
        nights is published.
    DownloadError
        If the server cannot be reached, answers with an HTTP error, or sends a file whose SHA-256
        differs from the index twice in a row.
    """
    dataset = dataset_named(name)
    subjects = parse_subjects(subjects, name) if isinstance(subjects, str) else sorted(set(map(int, subjects)))
    nights = list(dataset.nights) if nights is None else (
        parse_nights(nights, name) if isinstance(nights, str) else sorted(set(map(int, nights))))
    for number, allowed, what in [(s, dataset.subjects, "subject") for s in subjects] + \
                                 [(n, dataset.nights, "night") for n in nights]:
        if number not in allowed:
            raise DatasetError(f"{name} has no {what} {number}: {what}s are numbered "
                               f"{min(allowed)} to {max(allowed)}")
    if not subjects or not nights:
        raise DatasetError("no subject or no night asked for")
    report = progress or (lambda event: None)
    root = resolve_base_url(name, base_url)
    directory = pathlib.Path(directory)

    checksums, selected = _select(dataset, root, directory, subjects, nights)
    for subject in subjects:
        absent = [n for n in nights if (subject, n) not in selected]
        if len(absent) < len(nights):
            for night in absent:
                report(FetchEvent("note", message=f"subject {subject} has no night {night} in {name}; skipped"))

    paths = []
    for files in selected.values():
        for relative in files:
            target = directory.joinpath(*relative.split("/"))
            _fetch_file(root + urllib.parse.quote(relative), target, checksums[relative], relative, report)
            paths.append(target)
    return paths


def _select(dataset: Dataset, root: str, directory: pathlib.Path, subjects: list, nights: list) -> tuple:
    """The checksums and the selected files, from the kept index if it names every subject, else a fresh one."""
    kept = directory / dataset.index
    if kept.is_file():
        try:
            checksums = _parse_index(kept.read_text(encoding="utf-8", errors="replace"), str(kept))
        except DatasetError:
            checksums = {}
        selected = dataset.select(checksums, subjects, nights)
        if not _missing(selected, subjects):
            return checksums, selected
    url = root + dataset.index
    body = _get_index(url)
    checksums = _parse_index(body, url)
    directory.mkdir(parents=True, exist_ok=True)  # only now: a failed first request leaves no empty directory
    part = kept.with_name(kept.name + ".part")
    part.write_text(body, encoding="utf-8")
    os.replace(part, kept)
    selected = dataset.select(checksums, subjects, nights)
    missing = _missing(selected, subjects)
    if missing:
        asked = ", ".join(map(str, nights))
        raise DatasetError(f"{dataset.name} publishes no recording of subject{'s' if len(missing) > 1 else ''} "
                           f"{_as_ranges(missing)} for night{'s' if len(nights) > 1 else ''} {asked} "
                           f"(index: {url}); leave {'them' if len(missing) > 1 else 'it'} out of --subjects")
    return checksums, selected


def _missing(selected: dict, subjects: list) -> list:
    present = {subject for subject, _ in selected}
    return [s for s in subjects if s not in present]


def _as_ranges(numbers: list) -> str:
    """``[1, 2, 3, 7]`` as ``"1-3, 7"``."""
    runs: list = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _parse_index(text: str, source: str) -> dict:
    """``{relative path: sha256}`` from ``sha256sum`` output (``<hex>  <path>`` or ``<hex> *<path>``)."""
    checksums = {}
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and _HEX64.match(parts[0]):
            checksums[parts[1].lstrip("*").strip()] = parts[0].lower()
    if not checksums:
        raise DatasetError(f"{source} lists no files with SHA-256 checksums (is the base URL right?)")
    return checksums


def _get_index(url: str) -> str:
    """The index text, tried twice like any file."""
    for attempt in (1, 2):
        try:
            with _open(url) as response:
                return response.read().decode("utf-8", errors="replace")
        except _NETWORK_ERRORS as err:
            if attempt == 2 or not _worth_retrying(err):
                raise DownloadError(_network_message(url, err)) from None
    raise AssertionError("unreachable")


def _fetch_file(url: str, target: pathlib.Path, sha256: str, relative: str, report) -> None:
    """Make ``target`` a verified copy of ``url``: keep it if its checksum matches, else download it."""
    if target.is_file():
        if _sha256_of(target) == sha256:
            report(FetchEvent("present", relative, done=target.stat().st_size))
            return
        target.unlink()  # damaged or stale: a file of the final name must always be a verified one
    target.parent.mkdir(parents=True, exist_ok=True)
    for attempt in (1, 2):
        try:
            size = _download(url, target, sha256, relative, report)
        except _Corrupt:
            problem = f"{url} sent a file whose SHA-256 differs from the index"
            if attempt == 2:
                raise DownloadError(f"{problem}, twice; nothing was kept") from None
            report(FetchEvent("retry", relative, message=f"{problem}; trying again"))
        except _NETWORK_ERRORS as err:
            if attempt == 2 or not _worth_retrying(err):
                raise DownloadError(_network_message(url, err)) from None
            report(FetchEvent("retry", relative, message=f"{_network_message(url, err)}; trying again"))
        else:
            report(FetchEvent("done", relative, done=size, total=size))
            return


class _Corrupt(Exception):
    """The bytes received do not have the expected SHA-256."""


def _download(url: str, target: pathlib.Path, sha256: str, relative: str, report) -> int:
    """Stream ``url`` to ``target.part``, hashing as it goes; rename to ``target`` if the hash matches."""
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    done = 0
    try:
        with _open(url) as response, open(part, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            report(FetchEvent("start", relative, total=total))
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                report(FetchEvent("bytes", relative, done=done, total=total))
        if digest.hexdigest() != sha256:
            raise _Corrupt
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)  # gone already after the rename; removes the bytes of a failed attempt
    return done


def _open(url: str):
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    return urllib.request.urlopen(request, timeout=TIMEOUT)


# What a network or server failure raises (local disk errors are plain OSError and pass through).
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


def _worth_retrying(err: Exception) -> bool:
    """Everything but a client error (404 and the like), which another attempt will not change."""
    return not (isinstance(err, urllib.error.HTTPError) and 400 <= err.code < 500)


def _network_message(url: str, err: Exception) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"{url} answered HTTP {err.code} {err.reason}".rstrip()
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, TimeoutError):
        return f"no answer from {url} within {TIMEOUT:g} s"
    if isinstance(reason, http.client.IncompleteRead):
        return f"the connection closed before all of {url} arrived"
    if isinstance(reason, OSError) and reason.strerror:
        text = reason.strerror
    else:
        text = str(reason) or type(reason).__name__
    hint = "" if url.startswith("file:") else " (offline, or the server is down?)"
    return f"cannot download {url}: {text[0].lower() + text[1:]}{hint}"


def _sha256_of(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def sleep_edf_pairs(directory) -> list:
    """Each Sleep-EDF recording in a directory tree with its hypnogram.

    A ``*-PSG.edf`` and a ``*-Hypnogram.edf`` belong together when the first 7 characters of their
    names agree (``SC4001E0-PSG.edf`` and ``SC4001EC-Hypnogram.edf`` are recording ``SC4001E``).
    Files without their partner are left out.

    Parameters
    ----------
    directory : str or PathLike
        Searched with its subdirectories (``fetch`` puts the files under ``sleep-cassette/``).

    Returns
    -------
    list of (pathlib.Path, pathlib.Path)
        ``(psg, hypnogram)`` pairs sorted by recording name; empty if there is none.

    Raises
    ------
    DatasetError
        If the directory does not exist, or holds two recordings or two hypnograms of one name.
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"{directory}: no such directory")
    found: dict = {"psg": {}, "hypnogram": {}}
    for path in sorted(directory.rglob("*")):
        lower = path.name.lower()
        kind = "psg" if lower.endswith("-psg.edf") else "hypnogram" if lower.endswith("-hypnogram.edf") else None
        if kind is None or not path.is_file():
            continue
        key = path.name[:7]
        if key in found[kind]:
            raise DatasetError(f"two {kind} files of recording {key}: {found[kind][key]} and {path}")
        found[kind][key] = path
    return [(found["psg"][key], found["hypnogram"][key]) for key in sorted(found["psg"]) if key in found["hypnogram"]]
