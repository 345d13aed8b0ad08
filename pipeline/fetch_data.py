"""Gets a MovieLens "latest"-format folder: a given folder, a local copy, or GroupLens' download.

    python -m pipeline.fetch_data                      # ml-latest-small into data/
    python -m pipeline.fetch_data--dataset ml-25m      # any MovieLens "latest"-format archive
    python -m pipeline.fetch_data--data-dir /my/copy   # just check a folder

A local copy (MOVIELENS_MIRROR, or ../shared/movielens beside the checkout) is used before the
network: MovieLens' licence forbids redistributing the files, so this repository never holds them.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from components.movielens_example_gen.config import MOVIES_FILE, RATINGS_FILE
from pipeline import configs, spans

_LOG = logging.getLogger(__name__)
REQUIRED_FILES = (RATINGS_FILE, MOVIES_FILE)


class DataError(RuntimeError):
    """The data could not be found, downloaded or verified."""


def check_folder(folder: Path) -> Path:
    """Raises DataError unless `folder` holds ratings.csv and movies.csv, or movies.csv and
    spans (span-1/ratings.csv, ...: pipeline/spans.py)."""
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()
               and not (name == RATINGS_FILE and spans.has_spans(folder))]
    if missing:
        raise DataError(f"{folder} is not a MovieLens 'latest'-format folder: missing "
                        f"{', '.join(missing)}")
    return folder


def verify_checksums(folder: Path) -> None:
    """Checks files against a SHA256SUMS file in the folder, if there is one."""
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        return
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        try:
            expected, name = line.split(maxsplit=1)
        except ValueError:
            raise DataError(f"{sums}: malformed line {line!r}") from None
        path = folder / name.strip().lstrip("*")
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            raise DataError(f"{path}: SHA-256 does not match {sums}; the copy is corrupt")


def download(dataset: str, dest_home: Path, url: str | None = None, timeout: float = 30.0) -> Path:
    """Downloads and unpacks GroupLens' `<dataset>.zip` into dest_home/<dataset>."""
    url = url or configs.DATA_URL_TEMPLATE.format(dataset=dataset)
    dest_home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_home) as tmp:
        archive = Path(tmp) / f"{dataset}.zip"
        _LOG.info("Downloading %s", url)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(archive, "wb") as f:
                total = int(response.headers.get("Content-Length") or 0)
                done = 0
                while chunk := response.read(1 << 20):
                    f.write(chunk)
                    done += len(chunk)
                    if total:
                        _LOG.info("  %5.1f%% of %.1f MB", 100 * done / total, total / 1e6)
        except OSError as e:
            raise DataError(f"could not download {url}: {e}") from e
        try:
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)
        except zipfile.BadZipFile as e:
            raise DataError(f"{url} did not return a zip archive: {e}") from e
        unpacked = Path(tmp) / dataset
        check_folder(unpacked)
        target = dest_home / dataset
        if target.exists():
            shutil.rmtree(target)
        unpacked.rename(target)
    return target


def ensure_data(data_dir: str | Path | None = None, dataset: str = configs.DATASET,
                data_home: Path = configs.DATA_HOME, offline: bool = False) -> Path:
    """Returns a folder with the dataset, fetching it if needed (see module docstring)."""
    if data_dir:
        folder = check_folder(Path(data_dir).expanduser().resolve())
        _LOG.info("Using MovieLens data in %s", folder)
        return folder
    target = data_home / dataset
    if target.is_dir():
        _LOG.info("Using MovieLens data in %s", target)
        return check_folder(target)
    for mirror in configs.LOCAL_DATA_MIRRORS:
        copy = mirror / dataset
        if copy.is_dir():
            check_folder(copy)
            verify_checksums(copy)
            _LOG.info("Copying the local MovieLens copy %s to %s", copy, target)
            data_home.mkdir(parents=True, exist_ok=True)
            shutil.copytree(copy, target, copy_function=shutil.copy)
            return target
    if offline:
        raise DataError(f"{dataset} is not in {target} nor in a local copy "
                        f"({', '.join(map(str, configs.LOCAL_DATA_MIRRORS))}) and --offline is set")
    return download(dataset, data_home)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="use this MovieLens folder as it is")
    parser.add_argument("--dataset", default=configs.DATASET,
                        help="GroupLens archive name, e.g. ml-latest-small, ml-latest, ml-32m")
    parser.add_argument("--data-home", type=Path, default=configs.DATA_HOME,
                        help="where datasets are unpacked (default: %(default)s)")
    parser.add_argument("--offline", action="store_true", help="never download")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        folder = ensure_data(args.data_dir, args.dataset, args.data_home, args.offline)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
