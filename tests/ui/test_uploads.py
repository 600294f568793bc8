"""Safe zip extraction and session folders (no model, no gradio)."""

import json
import os
import stat
import time
import zipfile

import pytest

from tests.ui.conftest import zip_folder
from ui.sessions import SessionFolders
from ui.uploads import UploadError, extract_zip, find_views_folder, unpack_views


def _zip(path, members: dict):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def test_good_zip_unpacks_to_the_transforms_folder(views_zip, tmp_path):
    folder = unpack_views(views_zip, tmp_path / "x")
    assert folder == (tmp_path / "x" / "mug").resolve()
    assert (folder / "transforms.json").is_file() and len(list((folder / "views").glob("*.png"))) == 4


def test_zip_without_folder_prefix_also_works(posed_views, tmp_path):
    z = zip_folder(posed_views, tmp_path / "flat.zip")
    assert unpack_views(z, tmp_path / "x") == (tmp_path / "x").resolve()


@pytest.mark.parametrize("name, match", [("../evil.png", r"leaves the folder"), ("a/../../evil.png", r"leaves"),
                                         ("/etc/evil.png", "absolute path"), ("C:/evil.png", "absolute path")])
def test_path_traversal_is_refused_and_nothing_is_left(tmp_path, name, match):
    z = _zip(tmp_path / "bad.zip", {"transforms.json": "{}", name: b"x"})
    with pytest.raises(UploadError, match=match):
        unpack_views(z, tmp_path / "dest")
    assert not (tmp_path / "dest").exists() and not (tmp_path / "evil.png").exists()


def test_symlink_member_is_refused(tmp_path):
    info = zipfile.ZipInfo("link.png")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(tmp_path / "l.zip", "w") as z:
        z.writestr(info, "/etc/passwd")
    with pytest.raises(UploadError, match="symbolic link"):
        extract_zip(tmp_path / "l.zip", tmp_path / "dest")


def test_limits_on_files_and_extracted_size(tmp_path):
    many = _zip(tmp_path / "many.zip", {f"{i}.png": b"x" for i in range(11)})
    with pytest.raises(UploadError, match="11 entries; the limit is 10"):
        extract_zip(many, tmp_path / "d1", max_files=10)
    bomb = _zip(tmp_path / "bomb.zip", {"big.png": b"\0" * (3 << 20)})  # compresses to a few kB
    assert bomb.stat().st_size < 100_000
    with pytest.raises(UploadError, match="once extracted"):
        extract_zip(bomb, tmp_path / "d2", max_bytes=1 << 20)
    with pytest.raises(UploadError, match="the limit is 0 MB"):
        unpack_views(bomb, tmp_path / "d3", max_zip_bytes=1000)


def test_lying_size_header_is_caught_while_extracting(tmp_path):
    z = _zip(tmp_path / "lie.zip", {"big.png": b"\0" * (2 << 20)})
    data = bytearray(z.read_bytes())
    # Patch the declared uncompressed size in the central directory to 10 bytes; the real data is 2 MB.
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24:cd + 28] = (10).to_bytes(4, "little")
    (tmp_path / "lie2.zip").write_bytes(bytes(data))
    with pytest.raises(UploadError):
        extract_zip(tmp_path / "lie2.zip", tmp_path / "d", max_bytes=1 << 20)


def test_not_a_zip_and_corrupt_member(tmp_path):
    (tmp_path / "no.zip").write_text("hello")
    with pytest.raises(UploadError, match="not a readable zip"):
        unpack_views(tmp_path / "no.zip", tmp_path / "d")
    z = _zip(tmp_path / "c.zip", {"a.png": os.urandom(5000)})
    data = bytearray(z.read_bytes())
    data[100:120] = bytes(255 - b for b in data[100:120])  # inside the member's data: CRC no longer matches
    (tmp_path / "c2.zip").write_bytes(bytes(data))
    with pytest.raises(UploadError, match="corrupt"):
        extract_zip(tmp_path / "c2.zip", tmp_path / "d2")


def test_transforms_problems_are_named(tmp_path):
    cases = {
        "none": ({"a.png": b"x"}, "no transforms.json"),
        "two": ({"a/transforms.json": "{}", "b/transforms.json": "{}"}, "several folders"),
        "json": ({"transforms.json": "{not json"}, "not valid JSON"),
        "frames": ({"transforms.json": json.dumps({"frames": []})}, "non-empty 'frames'"),
        "escape": ({"transforms.json": json.dumps({"frames": [{"file_path": "../../../etc/passwd"}]})},
                   r"frames\[0\].file_path '../../../etc/passwd' points outside"),
    }
    for name, (members, match) in cases.items():
        with pytest.raises(UploadError, match=match):
            unpack_views(_zip(tmp_path / f"{name}.zip", members), tmp_path / name)


def test_only_allowed_file_types_are_written(tmp_path):
    z = _zip(tmp_path / "m.zip", {"transforms.json": "{}", "run.sh": "rm -rf /", "__MACOSX/._a.png": "x",
                                  ".hidden.png": "x", "v/a.PNG": "x"})
    written = extract_zip(z, tmp_path / "d")
    names = sorted(p.relative_to((tmp_path / "d").resolve()).as_posix() for p in written)
    assert names == ["transforms.json", "v/a.PNG"]


def test_session_folders_trim_sweep_and_end(tmp_path):
    f = SessionFolders(tmp_path, max_age_s=60, runs_per_session=2)
    runs = []
    for _ in range(3):
        r = f.new_run("abc", "generate")
        r.mkdir()
        runs.append(r)
        time.sleep(0.01)
    assert [r.exists() for r in runs] == [False, True, True]  # a new run removed the oldest beyond 2
    assert f.session_dir("../../x").parent == f.sessions / "local"  # ids that are not plain tokens are hashed
    assert f.session_dir("abc", "0f" * 16) == f.sessions / ("0f" * 16) / "abc"  # another owner: another folder
    other = f.new_run("old", "generate")
    other.mkdir()
    past = time.time() - 3600
    os.utime(other.parent, (past, past))
    assert f.sweep() == [other.parent] and not other.parent.exists() and runs[2].exists()
    f.end("abc")
    assert not f.session_dir("abc").exists()


def test_stage_views_keeps_the_upload_limits_and_leaves_nothing_when_refused(zero123_grid, views_zip, tmp_path):
    from ui.uploads import stage_views

    folder, mask = stage_views(zero123_grid, tmp_path / "ok", "zero123pp-v1.2")
    assert len(list(folder.glob("views/*.png"))) == 6 and (folder / "transforms.json").is_file()
    assert mask["mode"] == "background" and mask["background"] == [128, 128, 128]
    folder, mask = stage_views(views_zip, tmp_path / "zip", None)  # today's posed-views zip
    assert mask is None and (folder / "transforms.json").is_file()
    for args, kw, match in [
        ((zero123_grid, tmp_path / "d1", "zero123pp-v1.2"), {"max_zip_bytes": 100}, r"the limit is 0 MB"),
        ((zero123_grid, tmp_path / "d2", "zero123pp-v1.2"), {"max_image_pixels": 1000}, r"limit is 0.0 MP"),
        ((zero123_grid, tmp_path / "d3", "orbit:views=6"), {"max_views": 4, "grid": "3x2"},
         r"grid: 3x2 is 6 views; the limit is 4"),
        ((zero123_grid, tmp_path / "d4", "mvdream"), {"grid": "3x2"}, r"rig: mvdream has 4 views, the input has 6"),
    ]:
        with pytest.raises(UploadError, match=match):
            stage_views(*args, **kw)
        assert not args[1].exists()
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UploadError, match=r"upload: notes.txt is not a zip, image or video"):
        stage_views(tmp_path / "notes.txt", tmp_path / "d5", "mvdream")
