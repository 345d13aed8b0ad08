"""Getting the data: a given folder, a local copy (checksummed), or a download over HTTP."""

import functools
import hashlib
import http.server
import threading
import zipfile

import pytest
from movielens_fixture import write_movielens_fixture

from pipeline import configs, fetch_data


def test_a_given_folder_is_used_as_is(movielens_dir):
    assert fetch_data.ensure_data(movielens_dir) == movielens_dir.resolve()


def test_a_folder_without_ratings_is_refused_by_name(tmp_path):
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n")
    with pytest.raises(fetch_data.DataError, match="missing ratings.csv"):
        fetch_data.ensure_data(tmp_path)


def test_a_local_copy_is_copied_after_its_checksums_are_checked(tmp_path, monkeypatch):
    copy = write_movielens_fixture(tmp_path / "mirror" / "ml-test")
    sums = "".join(f"{hashlib.sha256((copy / n).read_bytes()).hexdigest()}  {n}\n"
                   for n in ("ratings.csv", "movies.csv"))
    (copy / "SHA256SUMS").write_text(sums)
    monkeypatch.setattr(configs, "LOCAL_DATA_MIRRORS", [tmp_path / "mirror"])
    home = tmp_path / "home"
    got = fetch_data.ensure_data(dataset="ml-test", data_home=home, offline=True)
    assert got == home / "ml-test"
    assert (got / "ratings.csv").read_bytes() == (copy / "ratings.csv").read_bytes()

    (copy / "movies.csv").write_text("movieId,title,genres\r\n1,Tampered (1999),Drama\r\n")
    with pytest.raises(fetch_data.DataError, match="movies.csv: SHA-256 does not match"):
        fetch_data.ensure_data(dataset="ml-test", data_home=tmp_path / "home2", offline=True)


def test_offline_without_a_copy_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr(configs, "LOCAL_DATA_MIRRORS", [tmp_path / "nowhere"])
    with pytest.raises(fetch_data.DataError, match="not in .* nor in a local copy"):
        fetch_data.ensure_data(dataset="ml-test", data_home=tmp_path / "home", offline=True)


@pytest.fixture
def http_server(tmp_path):
    """Serves tmp_path/www on a loopback port, like files.grouplens.org would."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_download_unpacks_the_grouplens_archive(tmp_path, http_server, monkeypatch):
    root, base = http_server
    folder = write_movielens_fixture(tmp_path / "src" / "ml-test")
    with zipfile.ZipFile(root / "ml-test.zip", "w") as z:
        for name in ("ratings.csv", "movies.csv"):
            z.write(folder / name, f"ml-test/{name}")
    monkeypatch.setattr(configs, "LOCAL_DATA_MIRRORS", [])
    monkeypatch.setattr(configs, "DATA_URL_TEMPLATE", base + "/{dataset}.zip")
    got = fetch_data.ensure_data(dataset="ml-test", data_home=tmp_path / "home")
    assert got == tmp_path / "home" / "ml-test"
    assert (got / "movies.csv").read_bytes() == (folder / "movies.csv").read_bytes()

    with pytest.raises(fetch_data.DataError, match="could not download .*/ml-none.zip"):
        fetch_data.ensure_data(dataset="ml-none", data_home=tmp_path / "home")

    (root / "ml-html.zip").write_text("<html>Service unavailable</html>")
    with pytest.raises(fetch_data.DataError, match="ml-html.zip did not return a zip archive"):
        fetch_data.ensure_data(dataset="ml-html", data_home=tmp_path / "home")
