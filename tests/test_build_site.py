"""tools/build_site.py: extracting the vendored npm packages works on every Python 3.11.x (no tarfile filter)."""

import importlib.util
import io
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _build_site():
    spec = importlib.util.spec_from_file_location("build_site", ROOT / "tools" / "build_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tar(tmp_path, entries):
    path = tmp_path / "pkg.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "link":
                info.type = tarfile.SYMTYPE
                info.linkname = data
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_extract_members_writes_files_and_folders(tmp_path):
    build_site = _build_site()
    path = _tar(tmp_path, [("a", "dir", None), ("a/b.js", "file", b"var x = 1;"), ("c.txt", "file", b"hi")])
    dest = tmp_path / "out"
    with tarfile.open(path) as tar:
        n = build_site.extract_members(tar, dest, tar.getmembers())
    assert n == 2
    assert (dest / "a" / "b.js").read_bytes() == b"var x = 1;"
    assert (dest / "c.txt").read_text() == "hi"


@pytest.mark.parametrize("entry,message", [
    (("../escape.js", "file", b"x"), "outside"),
    (("/abs/escape.js", "file", b"x"), "outside"),
    (("link.js", "link", "/etc/passwd"), "not a regular file"),
])
def test_extract_members_refuses_what_data_filter_refuses(tmp_path, entry, message):
    build_site = _build_site()
    path = _tar(tmp_path, [entry])
    with tarfile.open(path) as tar, pytest.raises(ValueError, match=message):
        build_site.extract_members(tar, tmp_path / "out", tar.getmembers())
    assert not (tmp_path / "escape.js").exists()
