"""What `batch` reads: folders, manifests, keys and image bytes, hostile ones included."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from onnx_sise.batch.inputs import BatchInputError, Item, key_of, list_inputs, read_image_bytes
from onnx_sise.errors import ImageError


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_folder_is_walked_for_images_without_hidden_files_or_the_output(tmp_path: Path) -> None:
    for name in ("a.png", "b.JPG", "sub/c.webp", "sub/deeper/d.tif", "notes.txt", ".hidden.png", ".cache/e.png",
                 "out/a.png.sise.png"):
        touch(tmp_path / name)
    os.symlink(tmp_path / "sub", tmp_path / "loop")  # a link to a folder is not followed
    expected = ["a.png", "b.JPG", "sub/c.webp", "sub/deeper/d.tif"]
    assert [i.key for i in list_inputs(tmp_path, exclude=tmp_path / "out")] == expected
    assert list_inputs(tmp_path, exclude=tmp_path / "out")[0] == Item("a.png", str(tmp_path / "a.png"))


def test_manifests_list_paths(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    touch(tmp_path / "list.txt", b"# photos\nrel/a.png\n\n/abs/b.png\ns3://bucket/c.jpg\nrel/a.png\n")
    items = list_inputs(tmp_path / "list.txt")
    assert items == [Item("abs/b.png", "/abs/b.png"), Item("bucket/c.jpg", "s3://bucket/c.jpg"),
                     Item("rel/a.png", str(tmp_path / "rel/a.png"))]
    touch(tmp_path / "list.csv", b"id,path\n1,x.png\n2,y/z.png\n")
    assert [i.key for i in list_inputs(tmp_path / "list.csv")] == ["x.png", "y/z.png"]
    touch(tmp_path / "bare.csv", b"x.png,1\n")
    assert [i.key for i in list_inputs(tmp_path / "bare.csv")] == ["x.png"]
    pq.write_table(pa.table({"path": ["p.png", "q/r.png"], "label": [1, 2]}), tmp_path / "list.parquet")
    assert [i.key for i in list_inputs(tmp_path / "list.parquet")] == ["p.png", "q/r.png"]


@pytest.mark.parametrize(("name", "data", "message"), [
    ("empty.txt", b"# nothing\n", "lists no image"),
    ("dots.txt", b"../secret.png\n", "hold no '..'"),
    ("latin.txt", b"\xff\xfe\x00", "not a txt list"),
    ("ints.parquet", None, "holds int64, not strings"),
    ("nopath.parquet", None, "no 'path' column"),
    ("junk.parquet", b"PAR1 not parquet", "not a Parquet file"),
    ("photo.png", b"x", "neither a folder nor a manifest"),
])
def test_bad_manifests_get_one_line(tmp_path: Path, name: str, data: bytes | None, message: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / name
    if data is None:
        pq.write_table(pa.table({"path" if name.startswith("ints") else "file": [1, 2]}), path)
    else:
        path.write_bytes(data)
    with pytest.raises(BatchInputError, match=message) as caught:
        list_inputs(path)
    assert "\n" not in str(caught.value)


def test_inputs_that_are_not_paths_or_files(tmp_path: Path) -> None:
    with pytest.raises(BatchInputError, match="INPUT must be"):
        list_inputs(42)
    with pytest.raises(BatchInputError, match="No such file"):
        list_inputs(tmp_path / "missing")
    os.mkfifo(tmp_path / "pipe.txt")  # never read: it would block
    with pytest.raises(BatchInputError, match="not a regular file"):
        list_inputs(tmp_path / "pipe.txt")


def test_keys_of_listed_paths() -> None:
    assert key_of("a/b.png", None) == "a/b.png"
    assert key_of("/data/a.png", None) == "data/a.png"
    assert key_of("gs://bucket/x/y.jpg", None) == "bucket/x/y.jpg"
    for bad in ("..", "a/../b.png", "/", "s3://"):
        with pytest.raises(BatchInputError):
            key_of(bad, None)


def test_image_bytes_local_and_by_uri(tmp_path: Path) -> None:
    path = touch(tmp_path / "a.png", b"\x89PNG data")
    assert read_image_bytes(str(path)) == b"\x89PNG data"
    assert read_image_bytes(path.as_uri()) == b"\x89PNG data"
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(ImageError, match="not a regular file"):
        read_image_bytes(str(tmp_path / "pipe.png"))
    with pytest.raises(ImageError, match="not found"):
        read_image_bytes(str(tmp_path / "missing.png"))
    with pytest.raises(ImageError, match="not a file"):
        read_image_bytes((tmp_path / "missing.png").as_uri())


def test_a_uri_folder_is_listed(tmp_path: Path) -> None:
    touch(tmp_path / "a.png")
    touch(tmp_path / "sub" / "b.jpg")
    touch(tmp_path / "c.txt")
    items = list_inputs(tmp_path.as_uri())
    assert [i.key for i in items] == ["a.png", "sub/b.jpg"]
    assert read_image_bytes(items[1].source) == b"x"
