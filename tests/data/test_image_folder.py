"""data=image_folder: layouts, labels, splits, colour modes, bad files and the shared cache."""

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaelab.data.image_decoder import UnreadableImagesError
from vaelab.data.image_folder import ImageFolderDataModule, ImageFolderError
from vaelab.data.splits import stratified_split
from vaelab.train import train

SIZE = 16
WHITE = (255, 255, 255)


def solid(colour, size=(SIZE + 4, SIZE + 8), mode="RGB") -> Image.Image:
    """A one-colour image of size (w, h)."""
    return Image.new(mode, size, colour)


def banded(colour) -> Image.Image:
    """60x20 (w x h): red | colour | blue thirds, so only the central square is `colour`."""
    image = solid((255, 0, 0), (60, 20))
    image.paste(solid(colour, (20, 20)), (20, 0))
    image.paste(solid((0, 0, 255), (20, 20)), (40, 0))
    return image


def palette_image(transparent: bool) -> Image.Image:
    """Mode "P": every pixel is palette index 1 (green); with `transparent` index 1 is clear."""
    image = Image.new("P", (20, 24), 1)
    image.putpalette([0, 0, 0, 0, 255, 0, 255, 0, 255] + [0] * (256 * 3 - 9))
    if transparent:
        image.info["transparency"] = 1
    return image


def luma(rgb) -> int:
    """ITU-R 601-2 luma, as PIL's RGB -> L conversion defines it."""
    r, g, b = rgb
    return int((r * 299 + g * 587 + b * 114 + 500) // 1000)


def write_folder(root: Path) -> dict[str, tuple[int, int, int]]:
    """Three classes of images in every supported format and mode, nested and of mixed sizes;
    returns {relative path: the RGB colour it should become over a white background}."""
    expected = {}

    def save(rel: str, image: Image.Image, colour, **options):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, **options)
        expected[rel] = colour

    for i in range(6):
        colour = (40 * i, 255 - 40 * i, 100)
        save(f"cats/plain_{i}.png", solid(colour, (SIZE + 2 * i, SIZE + 3 * i)), colour)
        save(f"dogs/plain_{i}.bmp", solid(colour[::-1]), colour[::-1])
        save(f"birds/deep/er/plain_{i}.webp", solid(colour), colour, lossless=True)
    save("cats/nested/deeper/wide.png", banded((9, 99, 199)), (9, 99, 199))
    save("cats/grey.png", solid(77, mode="L"), (77, 77, 77))
    save("cats/photo.jpg", solid((200, 120, 40), (50, 70)), (200, 120, 40), quality=95)
    save("dogs/clear.png", solid((10, 200, 30, 0), mode="RGBA"), WHITE)
    save("dogs/half.png", solid((255, 0, 0, 128), mode="RGBA"), (255, 127, 127))
    save("dogs/palette.png", palette_image(False), (0, 255, 0))
    save("dogs/palette_clear.gif", palette_image(True), WHITE, transparency=1)
    save("dogs/palette_clear.png", palette_image(True), WHITE, transparency=1)
    save("dogs/grey_alpha.png", solid((100, 255), mode="LA"), (100, 100, 100))
    save("birds/scan.tiff", solid((1, 2, 3)), (1, 2, 3))
    sixteen = Image.fromarray(np.full((20, 20), 200 * 257, dtype=np.uint16))
    save("birds/sixteen.png", sixteen, (200, 200, 200))
    magenta = Image.new("P", (20, 24), 2)
    magenta.putpalette(palette_image(False).getpalette())
    save("birds/frames.gif", palette_image(False), (0, 255, 0), save_all=True,
         append_images=[magenta])  # the first frame is used
    return expected


@pytest.fixture
def photo_folder(tmp_path) -> tuple[Path, dict]:
    root = tmp_path / "photos"
    return root, write_folder(root)


def setup_dm(root: Path, **kwargs) -> ImageFolderDataModule:
    kwargs = {"image_shape": [3, SIZE, SIZE], "batch_size": 2, "val_size": 0.25,
              "test_size": 0.25, "cache_dir": str(root.parent / "cache"), **kwargs}
    dm = ImageFolderDataModule(data_dir=str(root), **kwargs)
    dm.prepare_data()
    dm.setup()
    return dm


def rel(dm, split, root) -> list[str]:
    return [p.relative_to(root).as_posix() for p in dm.files(split)]


def mean_colours(images: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] uint8 -> float [N, C] mean per channel."""
    return images.float().mean((2, 3))


def test_classes_labels_and_pixels(photo_folder):
    root, expected = photo_folder
    dm = setup_dm(root)
    assert dm.class_names == ["birds", "cats", "dogs"] and dm.num_classes == 3
    seen = []
    for split in ("train", "val", "test"):
        images, labels = dm.images(split), dm.labels(split)
        names = rel(dm, split, root)
        seen += names
        assert images.shape == (len(names), 3, SIZE, SIZE) and images.dtype == torch.uint8
        assert labels.tolist() == [dm.class_names.index(n.split("/")[0]) for n in names]
        for name, image in zip(names, images):
            lossy = name.endswith(".jpg")
            target = torch.tensor(expected[name], dtype=torch.float32)[:, None, None]
            error = (image.float() - target).abs().max().item()
            assert error <= (8 if lossy else 1), f"{name}: off by {error}"
    assert sorted(seen) == sorted(expected), "every image in exactly one split"
    names, table = dm.attributes("train")
    assert names == ["birds", "cats", "dogs"] and table.sum(1).eq(1).all()


def test_names_that_are_not_utf8_and_named_pipes(photo_folder, tmp_path):
    """Issue 21: a file or folder name of undecodable bytes raised UnicodeEncodeError naming no
    file; a named pipe called x.png blocked the reader for ever."""
    import os

    from vaelab.console import buffer_log_file, close_log_file, log, open_log_file

    root, _ = photo_folder
    folder = os.fsencode(root) + b"/caf\xe9s"  # Latin-1 bytes, no valid UTF-8
    os.mkdir(folder)
    for i in range(4):
        with open(folder + f"/\xff{i}.png".encode("latin-1"), "wb") as f:
            solid((10, 20, 30)).save(f, format="png")
    os.mkfifo(root / "cats" / "pipe.png")
    dm = setup_dm(root)
    assert os.fsdecode(b"caf\xe9s") in dm.class_names
    assert not any(p.name == "pipe.png" for s in ("train", "val", "test") for p in dm.files(s))
    buffer_log_file()
    open_log_file(tmp_path / "run.log")
    log.warning(f"classes {dm.class_names}")  # the log file takes such names too
    close_log_file()
    assert "caf\\udce9s" in (tmp_path / "run.log").read_text()


def test_grey_output_and_background(photo_folder):
    root, expected = photo_folder
    dm = setup_dm(root, image_shape=[1, 8, 8], background=[0, 0, 255], crop_size=None)
    names = [n for s in ("train", "val", "test") for n in rel(dm, s, root)]
    images = torch.cat([dm.images(s) for s in ("train", "val", "test")])
    assert images.shape[1:] == (1, 8, 8)
    by_name = dict(zip(names, images))
    def off(name, grey):
        return (by_name[name].float() - grey).abs().max().item()

    assert off("cats/grey.png", 77) == 0
    assert off("cats/plain_2.png", luma(expected["cats/plain_2.png"])) <= 1
    # Fully transparent pixels take the background (blue), whose grey is 29.
    for name in ("dogs/clear.png", "dogs/palette_clear.gif", "dogs/palette_clear.png"):
        assert off(name, luma((0, 0, 255))) <= 1, name
    # Without a crop the banded 60x20 image is squeezed: its left edge is red, right edge blue.
    wide = by_name["cats/nested/deeper/wide.png"][0].float()
    assert abs(wide[:, 0].mean() - luma((255, 0, 0))) <= 2
    assert abs(wide[:, -1].mean() - luma((0, 0, 255))) <= 2


def test_seeded_splits_are_stratified_and_reproducible(photo_folder):
    root, _ = photo_folder
    dm = setup_dm(root, val_size=0.3, test_size=0.2, cache=False)
    counts = {c: sum(n.startswith(c + "/") for n in photo_folder[1]) for c in dm.class_names}
    assert counts == {"birds": 9, "cats": 9, "dogs": 12}
    for split, fraction in (("val", 0.3), ("test", 0.2)):
        names = rel(dm, split, root)
        assert len(names) == round(30 * fraction)
        for cls, n in counts.items():  # each class in proportion: floor or ceil of its share
            taken = sum(name.startswith(cls + "/") for name in names)
            assert np.floor(n * fraction) <= taken <= np.ceil(n * fraction), (split, cls)
    again = setup_dm(root, val_size=0.3, test_size=0.2, cache=False)
    assert rel(again, "val", root) == rel(dm, "val", root)
    other = setup_dm(root, val_size=0.3, test_size=0.2, cache=False, split_seed=7)
    assert rel(other, "val", root) != rel(dm, "val", root)
    # counts of images work as well: 9 and 6 are the same shares of the 30
    counted = setup_dm(root, val_size=9, test_size=6, cache=False)
    assert {s: rel(counted, s, root) for s in ("val", "test")} == \
        {s: rel(dm, s, root) for s in ("val", "test")}


def test_split_folders_are_used_and_missing_ones_drawn_from_train(tmp_path):
    root = tmp_path / "photos"
    for split, n in (("train", 8), ("test", 3)):
        for cls, colour in (("a", (250, 0, 0)), ("b", (0, 0, 250))):
            for i in range(n):
                path = root / split / cls / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                solid(colour).save(path)
    dm = setup_dm(root, val_size=0.25)
    assert dm.class_names == ["a", "b"]
    assert sorted(rel(dm, "test", root)) == sorted(f"test/{c}/{i}.png" for c in "ab"
                                                   for i in range(3))
    val, train = rel(dm, "val", root), rel(dm, "train", root)
    assert len(val) == 4 and not set(val) & set(train)
    assert all(n.startswith("train/") for n in val + train) and len(val + train) == 16
    assert dm.labels("test").tolist() == [0 if n.split("/")[1] == "a" else 1
                                          for n in rel(dm, "test", root)]
    # A class that only val/test has cannot be learnt: an error names it.
    extra = root / "test" / "c" / "0.png"
    extra.parent.mkdir()
    solid((0, 0, 0)).save(extra)
    with pytest.raises(ImageFolderError, match=r"class folders \['c'\] that .*train lacks"):
        setup_dm(root, cache=False)


def test_unlabelled_folder(photo_folder):
    root, _ = photo_folder
    solid((5, 5, 5)).save(root / "loose.png")
    dm = setup_dm(root, labels="none", cache=False)
    assert dm.class_names == ["all"] and dm.num_classes == 1
    assert sum(len(dm.labels(s)) for s in dm.split_names) == len(photo_folder[1]) + 1
    assert all(dm.labels(s).eq(0).all() for s in dm.split_names)
    # With labels=folders the loose file has no class: the error says what to do.
    with pytest.raises(ImageFolderError, match="loose.png.*data.labels=none"):
        setup_dm(root, cache=False)


def break_files(root: Path) -> list[str]:
    (root / "cats" / "broken.jpg").write_bytes(b"this is no jpeg")
    png = root / "dogs" / "plain_1.bmp"
    png.write_bytes(png.read_bytes()[:200])  # truncated
    return ["cats/broken.jpg", "dogs/plain_1.bmp"]


def test_unreadable_files_are_named(photo_folder):
    root, expected = photo_folder
    bad = break_files(root)
    with pytest.raises(UnreadableImagesError) as err:
        setup_dm(root)
    message = str(err.value)
    assert f"2 of {len(expected) + 1} image files" in message
    assert "data.skip_bad_files=true" in message
    assert all(str(root / name) + " is not a readable image" in message for name in bad)
    assert not list((root.parent / "cache").glob("*.partial")), "no partial file left behind"


def test_skip_bad_files_leaves_them_out_and_lists_them(photo_folder, monkeypatch,
                                                       decoded_files):
    root, expected = photo_folder
    bad = break_files(root)
    with pytest.warns(UserWarning) as warned:
        dm = setup_dm(root, skip_bad_files=True)
    names = [n for s in ("train", "val", "test") for n in rel(dm, s, root)]
    assert sorted(names) == sorted((set(expected) | {"cats/broken.jpg"}) - set(bad))
    listed = [line.split(" is not a readable")[0]
              for f in (root.parent / "cache").glob("*.skipped.txt")
              for line in f.read_text().splitlines()]
    assert sorted(listed) == sorted(str(root / name) for name in bad)
    counts = [re.search(r"left out (\d+) unreadable image files", str(w.message))
              for w in warned]
    assert [int(c.group(1)) for c in counts if c] == [2]
    # Reused from the cache: no decoding, the same files left out, labels still aligned.
    decoded = decoded_files
    decoded.clear()
    with pytest.warns(UserWarning, match="left out 2 unreadable image files"):
        again = setup_dm(root, skip_bad_files=True)
    assert decoded == []
    for split in ("train", "val", "test"):
        assert rel(again, split, root) == rel(dm, split, root)
        assert torch.equal(again.images(split), dm.images(split))
        assert again.labels(split).tolist() == [again.class_names.index(n.split("/")[0])
                                                for n in rel(again, split, root)]


def test_cache_reused_and_rebuilt(photo_folder, monkeypatch, caplog, decoded_files):
    root, expected = photo_folder
    cache = root.parent / "cache"
    decoded = decoded_files
    first = setup_dm(root)
    assert len(decoded) == len(expected)
    assert sorted(p.name.split("-")[0] for p in cache.glob("*.json")) == ["test", "train", "val"]
    decoded.clear()
    setup_dm(root)
    assert decoded == [], "a valid cache is reused"

    # A changed file: only its split is decoded again, and the new pixels are served.
    split = next(s for s in ("train", "val", "test") if "cats/grey.png" in rel(first, s, root))
    solid(200, mode="L").save(root / "cats" / "grey.png")
    decoded.clear()
    changed = setup_dm(root)
    assert len(decoded) == len(first.images(split))
    row = rel(changed, split, root).index("cats/grey.png")
    assert changed.images(split)[row].eq(200).all()
    # (copies: the damage below is written into the files these images are mapped from)
    good = {s: changed.images(s).clone() for s in ("val", "test")}

    # A damaged .npy header of the same size: rebuilt, and numpy's message never shown.
    array = next(cache.glob("val-*.npy"))
    data = array.read_bytes()
    array.write_bytes(data.replace(b"'descr': '|u1'", b"'descr': '|O' ", 1))
    # Same-size damage inside the first row: caught by the sampled-rows checksum.
    array = next(cache.glob("test-*.npy"))
    data = bytearray(array.read_bytes())
    data[len(data) - first.images("test").numel()] ^= 0xFF  # the first pixel of row 0
    array.write_bytes(bytes(data))
    decoded.clear()
    with caplog.at_level(logging.INFO):
        repaired = setup_dm(root)
    assert len(decoded) == len(first.images("val")) + len(first.images("test"))
    assert "damaged" in caplog.text and "allow_pickle" not in caplog.text
    for s in ("val", "test"):
        assert torch.equal(repaired.images(s), good[s])

    # Other parameters get their own files; the manifest records them.
    decoded.clear()
    setup_dm(root, resample="nearest")
    assert len(decoded) == len(expected)
    manifests = [json.loads(p.read_text()) for p in cache.glob("val-*-nearest-*.json")]
    assert len(manifests) == 1 and manifests[0]["params"]["resample"] == "nearest"


def test_images_stay_memory_mapped(photo_folder):
    """The cached split is served from the file's mapping, never copied whole into memory."""
    root, _ = photo_folder
    dm = setup_dm(root)
    address = dm.images("train").data_ptr()
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("needs Linux's /proc/self/maps")
    for line in maps.read_text().splitlines():
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if start <= address < end:
            assert len(fields) == 6 and fields[5].endswith(".npy"), line
            assert fields[5].startswith(str(root.parent / "cache" / "train-"))
            return
    pytest.fail("the images' address is in no mapping")


def test_folder_errors_name_the_folder_and_the_fix(tmp_path):
    with pytest.raises(ImageFolderError, match="does not exist.*data.data_dir"):
        setup_dm(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageFolderError, match=f"{empty} is empty"):
        setup_dm(empty)
    (empty / "notes.txt").write_text("no images here")
    (empty / ".hidden.png").write_bytes(b"")
    with pytest.raises(ImageFolderError, match=r"holds no image files \(looked for .png"):
        setup_dm(empty)
    one = tmp_path / "one"
    for i in range(4):
        (one / "cats").mkdir(parents=True, exist_ok=True)
        solid((i, i, i)).save(one / "cats" / f"{i}.png")
    with pytest.raises(ImageFolderError, match=r"one class folder \(cats/\).*data.labels=none"):
        setup_dm(one)
    with pytest.raises(ValueError, match="the val split .* would be empty"):
        setup_dm(one, labels="none", val_size=0.1)
    with pytest.raises(ValueError, match=r"is 24x20, smaller than data.crop_size=\[30, 30\]"):
        setup_dm(one, labels="none", crop_size=[30, 30], cache=False)


def test_unwritable_cache_folder_says_where_to_put_it(photo_folder):
    root, _ = photo_folder
    blocker = root.parent / "a_file"
    blocker.write_text("")
    with pytest.raises(OSError, match="set data.cache_dir to a writable folder"):
        setup_dm(root, cache_dir=str(blocker / "cache"))


@pytest.mark.integration
def test_recipe_fast_dev_run(photo_folder, make_cfg):
    root, _ = photo_folder
    cfg = make_cfg(["experiment=image_folder_vae", "debug=fdr", f"data.data_dir={root}",
                    "data.batch_size=4", "data.eval_batch_size=4", "data.val_size=0.25",
                    "data.test_size=0.25"])
    assert cfg.data.image_shape == [3, 64, 64]
    metrics = train(cfg)
    assert np.isfinite(metrics["test/elbo"])
    assert len(list((root / "vaelab_cache").glob("*.json"))) == 3


def test_stratified_split_keeps_the_total_when_classes_are_small():
    labels = np.repeat(np.arange(10), 40)  # 1% of a class is 0.4 images: rounding per class gives 0
    parts = stratified_split(labels, {"val": 0.01, "test": 0.05}, seed=3)
    assert len(parts["val"]) == 4 and len(parts["test"]) == 20
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(400))
    assert np.bincount(labels[parts["test"]], minlength=10).tolist() == [2] * 10
