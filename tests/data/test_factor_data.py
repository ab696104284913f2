"""Data with ground-truth factors: the rendered sprites, the dSprites and 3dshapes readers (tiny
files in the official formats), factor sampling and look-up, attribute names, the cache, and
file errors."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser

from vaelab.data import shapes3d
from vaelab.data.cache import CacheWriteError
from vaelab.data.dsprites import DSpritesDataModule
from vaelab.data.factors import FactorFileError
from vaelab.data.shapes3d import Shapes3DDataModule
from vaelab.data.sprites import SpritesDataModule
from vaelab.train import train

# A dSprites-format grid: colour (constant), shape, scale, orientation, posX, posY.
DSPRITES_GRID = (1, 3, 2, 4, 4, 4)
# floor_hue, wall_hue, object_hue, scale, shape, orientation
SHAPES3D_GRID = (2, 2, 2, 2, 3, 2)
BITS = 10  # pixels that spell an image's grid index in binary
TINY_SPRITES = {"image_size": 24, "scales": 3, "orientations": 4, "positions": 5,
                "val_size": 20, "test_size": 20}


def _unpickled():
    raise AssertionError("the dSprites metadata was unpickled")


class PickleTrap:
    """Stands in for dSprites' pickled metadata dict; unpickling it fails the test."""

    def __reduce__(self):
        return _unpickled, ()


def grid_rows(sizes) -> np.ndarray:
    """int64 [prod(sizes), K]: every combination, the last factor fastest."""
    return np.indices(sizes).reshape(len(sizes), -1).T


def spell(codes: np.ndarray, size: int = 8) -> np.ndarray:
    """uint8 [N, size, size] of 0/1 whose first BITS pixels are the binary digits of codes."""
    images = np.zeros((len(codes), size * size), dtype=np.uint8)
    images[:, :BITS] = (codes[:, None] >> np.arange(BITS)) & 1
    return images.reshape(-1, size, size)


def read_codes(images: torch.Tensor) -> np.ndarray:
    """Inverse of spell for uint8 0/255 images [N, 1, H, W]."""
    bits = images.reshape(len(images), -1)[:, :BITS].numpy() // 255
    return (bits.astype(np.int64) << np.arange(BITS)).sum(1)


def write_dsprites(path: Path, rows: np.ndarray | None = None, sizes=DSPRITES_GRID) -> np.ndarray:
    """A dSprites-format .npz of the given latents_classes rows (default: the whole grid), with
    each image spelling the grid index of its non-colour factors; returns the rows."""
    rows = grid_rows(sizes) if rows is None else rows
    values = rows.astype(np.float64)
    values[:, 1] += 1  # dSprites' shape values are 1, 2, 3
    np.savez_compressed(path, imgs=spell(np.ravel_multi_index(rows[:, 1:].T, sizes[1:])),
                        latents_classes=rows, latents_values=values,
                        metadata=np.array(PickleTrap(), dtype=object))
    return rows


def dsprites(tmp_path: Path, file_name: str = "dsprites.npz", **kwargs) -> DSpritesDataModule:
    kwargs = {"val_size": 30, "test_size": 30, "image_shape": (1, 8, 8), "batch_size": 16,
              **kwargs}
    dm = DSpritesDataModule(data_dir=str(tmp_path), file_name=file_name,
                            cache_dir=str(tmp_path / "cache"), **kwargs)
    dm.setup()
    return dm


def sprites(cache_dir: Path, **kwargs) -> SpritesDataModule:
    kwargs = {**TINY_SPRITES, "image_shape": (1, 24, 24), **kwargs}
    dm = SpritesDataModule(cache_dir=str(cache_dir), **kwargs)
    dm.setup()
    return dm


# -- dSprites ----------------------------------------------------------------------------------
def test_dsprites_reads_the_grid_and_drops_the_constant_colour(tmp_path):
    rows = write_dsprites(tmp_path / "dsprites.npz")
    dm = dsprites(tmp_path)
    assert dm.factor_names == ["shape", "scale", "orientation", "posX", "posY"]
    assert dm.factor_sizes == [3, 2, 4, 4, 4]
    assert dm.class_names == ["square", "ellipse", "heart"]
    total = 0
    for split, n in (("train", len(rows) - 60), ("val", 30), ("test", 30)):
        images, labels = dm.images(split), dm.labels(split)
        assert images.shape == (n, 1, 8, 8) and images.dtype == torch.uint8
        assert labels.shape == (n, 5) and labels.dtype == torch.int64
        assert set(images.unique().tolist()) == {0, 255}
        # Each image still carries its own factors after the split.
        assert np.array_equal(read_codes(images),
                              np.ravel_multi_index(labels.numpy().T, DSPRITES_GRID[1:]))
        total += n
    assert total == len(rows)


def test_dsprites_factor_names_fall_back_for_other_column_counts(tmp_path):
    write_dsprites(tmp_path / "dsprites.npz", sizes=(1, 3, 2, 4, 4, 4, 2))
    dm = dsprites(tmp_path, label_factor="factor_1")
    assert dm.factor_names == [f"factor_{i}" for i in range(1, 7)]
    assert dm.factor_sizes == [3, 2, 4, 4, 4, 2]


def test_dsprites_subsample_keeps_factor_sizes_and_finds_only_present_images(tmp_path):
    full = grid_rows(DSPRITES_GRID)
    rng = np.random.default_rng(0)
    kept = full[rng.permutation(len(full))[: len(full) // 2]]  # half, in shuffled order
    write_dsprites(tmp_path / "sub.npz", kept)
    dm = dsprites(tmp_path, file_name="sub.npz")
    assert dm.factor_sizes == [3, 2, 4, 4, 4]
    labels = dm.labels("val")
    assert torch.equal(dm.images_from_factors(labels), dm.images("val"))
    absent = sorted(set(map(tuple, full[:, 1:].tolist())) - set(map(tuple, kept[:, 1:].tolist())))
    shape, scale, orientation, pos_x, pos_y = absent[0]
    message = (f"shape={['square', 'ellipse', 'heart'][shape]}, scale={scale}, "
               f"orientation={orientation}, posX={pos_x}, posY={pos_y}")
    with pytest.raises(KeyError, match=message):
        dm.images_from_factors(torch.tensor([absent[0]]))
    write_dsprites(tmp_path / "twice.npz", np.concatenate([kept, kept[:1]]))
    with pytest.raises(ValueError, match="two images have the factors"):
        dsprites(tmp_path, file_name="twice.npz")


def test_dsprites_subgrid_samples_only_the_classes_present(tmp_path):
    full = grid_rows(DSPRITES_GRID)
    write_dsprites(tmp_path / "even.npz", full[full[:, 4] % 2 == 0])  # posX 0 and 2 only
    dm = dsprites(tmp_path, file_name="even.npz", val_size=10, test_size=10)
    assert dm.factor_sizes == [3, 2, 4, 3, 4]  # max class + 1
    factors = dm.sample_factors(500, torch.Generator().manual_seed(0))
    assert set(factors[:, 3].tolist()) == {0, 2}
    codes = read_codes(dm.images_from_factors(factors))
    assert np.array_equal(codes, np.ravel_multi_index(factors.numpy().T, DSPRITES_GRID[1:]))


def test_dsprites_never_unpickles_metadata_and_reuses_its_cache(tmp_path, monkeypatch):
    write_dsprites(tmp_path / "dsprites.npz")
    dsprites(tmp_path)  # PickleTrap would raise if the metadata were loaded
    cache = tmp_path / "cache" / "dsprites.npy"
    assert cache.is_file() and (tmp_path / "cache" / "dsprites.json").is_file()
    built = cache.stat().st_mtime_ns

    def no_stream(*args):
        raise AssertionError("the cache was built again")

    monkeypatch.setattr("vaelab.data.dsprites.stream_images", no_stream)
    dm = dsprites(tmp_path)
    assert cache.stat().st_mtime_ns == built and len(dm.images("train")) == 384 - 60


# -- sampling, look-up, classes and attributes -------------------------------------------------
def test_sample_factors_is_uniform_and_seeded(tmp_path):
    write_dsprites(tmp_path / "dsprites.npz")
    dm = dsprites(tmp_path)
    factors = dm.sample_factors(12000, torch.Generator().manual_seed(1))
    assert factors.shape == (12000, 5) and factors.dtype == torch.int64
    for k, size in enumerate(dm.factor_sizes):
        counts = torch.bincount(factors[:, k], minlength=size).double()
        assert len(counts) == size
        # Binomial standard deviation of a class count is below 60 here: 5 sigma.
        assert (counts - 12000 / size).abs().max() < 300
    again = dm.sample_factors(12000, torch.Generator().manual_seed(1))
    assert torch.equal(factors, again)


def test_images_from_factors_round_trips_through_the_label_arrays(tmp_path):
    write_dsprites(tmp_path / "dsprites.npz")
    dm = dsprites(tmp_path)
    factors = dm.sample_factors(200, torch.Generator().manual_seed(2))
    images = dm.images_from_factors(factors)
    assert images.shape == (200, 1, 8, 8) and images.dtype == torch.uint8
    # The same images, found by searching the split arrays for rows with these labels.
    all_images = torch.cat([dm.images(s) for s in ("train", "val", "test")])
    all_labels = torch.cat([dm.labels(s) for s in ("train", "val", "test")])
    rows = [int((all_labels == f).all(1).nonzero()) for f in factors]
    assert torch.equal(images, all_images[rows])
    with pytest.raises(ValueError, match=r"0\.\.size-1"):
        dm.images_from_factors(torch.tensor([[3, 0, 0, 0, 0]]))


def test_grid_index_numbers_the_full_grid_in_file_order(tmp_path):
    write_dsprites(tmp_path / "dsprites.npz")
    dm = dsprites(tmp_path)
    every = torch.cartesian_prod(*[torch.arange(s) for s in dm.factor_sizes])  # file order
    assert torch.equal(dm.grid_index(every), torch.arange(len(every)))
    assert torch.equal(dm.grid_factors(torch.arange(len(every))), every)


def test_class_labels_and_attributes_name_every_factor_class(tmp_path):
    write_dsprites(tmp_path / "dsprites.npz")
    dm = dsprites(tmp_path)
    labels = dm.labels("test")
    assert torch.equal(dm.class_labels(labels), labels[:, 0])
    names, table = dm.attributes("test")
    assert len(names) == sum(dm.factor_sizes) and table.shape == (30, len(names))
    assert table.dtype == torch.bool and torch.equal(table.sum(1), torch.full((30,), 5))
    assert torch.equal(table[:, names.index("shape:heart")], labels[:, 0] == 2)
    assert torch.equal(table[:, names.index("posY:3")], labels[:, 4] == 3)
    by_scale = dsprites(tmp_path, label_factor="scale")
    assert by_scale.class_names == ["0", "1"] and by_scale.num_classes == 2
    assert torch.equal(by_scale.class_labels(labels), labels[:, 1])
    with pytest.raises(ValueError, match="data.label_factor='color'.*posY"):
        dsprites(tmp_path, label_factor="color")  # constant, so dropped


def test_attribute_names_can_be_typed_as_hydra_overrides(tmp_path):
    write_dsprites(tmp_path / "dsprites.npz")
    names, _ = dsprites(tmp_path).attributes("val")
    parser = OverridesParser.create()
    for name in names:  # e.g. vaelab-attr attribute=shape:heart, unquoted
        assert parser.parse_override(f"attribute={name}").value() == name


# -- 3dshapes ----------------------------------------------------------------------------------
def shapes3d_values() -> list[np.ndarray]:
    """Each factor's values as 3dshapes stores them (hues in [0, 1), orientation in degrees)."""
    return [np.linspace(0, 0.9, 10)[[2, 7]], np.linspace(0, 0.9, 10)[[0, 9]],
            np.linspace(0, 0.9, 10)[[4, 5]], np.linspace(0.75, 1.25, 8)[[1, 6]],
            np.array([0.0, 1.0, 3.0]), np.linspace(-30, 30, 15)[[3, 11]]]


def write_shapes3d(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A 3dshapes-format .h5 of the grid in shuffled order; returns (images NHWC, class rows).
    Channel c of an image spells its grid index in the c-th row of pixels, then holds 7 * c."""
    rows = grid_rows(SHAPES3D_GRID)[np.random.default_rng(0).permutation(96)]
    values = np.stack([shapes3d_values()[k][rows[:, k]] for k in range(6)], axis=1)
    codes = np.ravel_multi_index(rows.T, SHAPES3D_GRID)
    images = np.full((96, 4, 16, 3), 7 * np.arange(3), dtype=np.uint8)
    for c in range(3):
        images[:, c, :BITS, c] = ((codes[:, None] >> np.arange(BITS)) & 1) * 255
    with h5py.File(path, "w") as file:
        file.create_dataset("images", data=images)
        file.create_dataset("labels", data=values)
    return images, rows


def shapes3d_dm(tmp_path: Path, **kwargs) -> Shapes3DDataModule:
    dm = Shapes3DDataModule(data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"),
                            val_size=10, test_size=10, image_shape=(3, 4, 16), **kwargs)
    dm.setup()
    return dm


def test_shapes3d_reads_channels_first_with_classes_from_sorted_values(tmp_path, monkeypatch):
    images, rows = write_shapes3d(tmp_path / "3dshapes.h5")
    dm = shapes3d_dm(tmp_path)
    assert dm.factor_names == ["floor_hue", "wall_hue", "object_hue", "scale", "shape",
                               "orientation"]
    assert dm.factor_sizes == list(SHAPES3D_GRID)
    stored = torch.cat([dm.images(s) for s in ("train", "val", "test")])
    labels = torch.cat([dm.labels(s) for s in ("train", "val", "test")])
    assert stored.shape == (96, 3, 4, 16) and stored.dtype == torch.uint8
    # Row i of the file had classes rows[i]; find it again by its labels.
    file_row = {tuple(r): i for i, r in enumerate(rows.tolist())}
    order = [file_row[tuple(r)] for r in labels.tolist()]
    assert torch.equal(stored, torch.from_numpy(images[order].transpose(0, 3, 1, 2)))
    factors = dm.sample_factors(50, torch.Generator().manual_seed(0))
    found = dm.images_from_factors(factors)
    expected = images[[file_row[tuple(f)] for f in factors.tolist()]].transpose(0, 3, 1, 2)
    assert torch.equal(found, torch.from_numpy(expected))

    def no_copy(*args):
        raise AssertionError("the cache was built again")

    monkeypatch.setattr(shapes3d, "copy_images_chw", no_copy)
    assert torch.equal(shapes3d_dm(tmp_path).images("val"), dm.images("val"))


def test_shapes3d_refuses_data_kept_outside_the_file_and_labels_that_are_not_numbers(tmp_path):
    """Issue 21: HDF5 external storage read /etc/passwd into the cache; NaN or byte-string
    labels gave meaningless factor classes."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(range(256)) * 12)
    images, _ = write_shapes3d(tmp_path / "3dshapes.h5")
    with h5py.File(tmp_path / "3dshapes.h5", "a") as file:
        del file["images"]
        file.create_dataset("images", shape=images.shape, dtype=np.uint8,
                            external=[(str(secret), 0, images.size)])
    with pytest.raises(FactorFileError, match="images dataset keeps its data in other files"):
        shapes3d_dm(tmp_path)
    assert not list((tmp_path / "cache").glob("*.npy"))
    for labels in (np.full((96, 6), np.nan), np.array([[b"a"] * 6] * 96)):
        write_shapes3d(tmp_path / "3dshapes.h5")
        with h5py.File(tmp_path / "3dshapes.h5", "a") as file:
            del file["labels"]
            file.create_dataset("labels", data=labels)
        with pytest.raises(FactorFileError, match="labels must be finite numbers"):
            shapes3d_dm(tmp_path)


# -- rendered sprites --------------------------------------------------------------------------
def sprite(dm: SpritesDataModule, shape=0, scale=0, orientation=0, pos_x=0, pos_y=0):
    """One sprite image [H, W] as float 0..1."""
    factors = torch.tensor([[shape, scale, orientation, pos_x, pos_y]])
    return dm.images_from_factors(factors)[0, 0].double() / 255


def centre_of_mass(image: torch.Tensor) -> tuple[float, float]:
    """(x, y) of a [H, W] image, in pixels."""
    ys, xs = torch.meshgrid(torch.arange(image.shape[0]), torch.arange(image.shape[1]),
                            indexing="ij")
    return float((image * xs).sum() / image.sum()), float((image * ys).sum() / image.sum())


def test_sprites_render_the_grid_with_its_factor_classes(tmp_path):
    dm = sprites(tmp_path)
    assert dm.factor_names == ["shape", "scale", "orientation", "pos_x", "pos_y"]
    assert dm.factor_sizes == [3, 3, 4, 5, 5] and dm.class_names == ["square", "ellipse", "heart"]
    assert dm.images("train").shape == (900 - 40, 1, 24, 24)
    assert set(dm.images("train").unique().tolist()) == {0, 255}
    assert torch.equal(dm.images_from_factors(dm.labels("val")), dm.images("val"))
    offsets = np.round(np.linspace(0, 24 - 12, 5))  # sprite_size 0.5 of 24: a 12-pixel box
    for shape in range(3):
        areas = [sprite(dm, shape, scale).sum() for scale in range(3)]
        assert areas[0] < areas[1] < areas[2], "a larger scale has more white pixels"
        x0, y0 = centre_of_mass(sprite(dm, shape, 2))
        for j in range(5):
            x, y = centre_of_mass(sprite(dm, shape, 2, pos_x=j))
            assert x - x0 == pytest.approx(offsets[j]) and y == pytest.approx(y0)
            x, y = centre_of_mass(sprite(dm, shape, 2, pos_y=j))
            assert y - y0 == pytest.approx(offsets[j]) and x == pytest.approx(x0)
    square, ellipse, heart = (sprite(dm, s, 2) for s in range(3))
    assert not (torch.equal(square, ellipse) or torch.equal(square, heart)
                or torch.equal(ellipse, heart))
    rows, cols = square.nonzero().T
    assert square[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all(), "a full square"
    rows, cols = ellipse.nonzero().T
    assert cols.max() - cols.min() > 1.5 * (rows.max() - rows.min()), "a lying ellipse"
    box = heart[:12, :12]  # pos_x = pos_y = 0: the 12-pixel box at the top left
    assert torch.equal(box, box.flip(1)) and not torch.equal(box, box.flip(0))


def test_sprites_orientation_is_lost_on_symmetric_shapes(tmp_path):
    dm = sprites(tmp_path)  # 4 orientations: 0, 90, 180, 270 degrees
    square = [sprite(dm, 0, 2, o) for o in range(4)]
    ellipse = [sprite(dm, 1, 2, o) for o in range(4)]
    heart = [sprite(dm, 2, 2, o) for o in range(4)]
    assert all(torch.equal(square[0], s) for s in square)
    assert torch.equal(ellipse[0], ellipse[2]) and not torch.equal(ellipse[0], ellipse[1])
    assert torch.equal(ellipse[1], ellipse[0].T)
    assert len({tuple(h.flatten().tolist()) for h in heart}) == 4


def test_sprites_anti_aliasing_gives_grey_edges(tmp_path):
    dm = sprites(tmp_path, anti_alias=True)
    values = dm.images("train").unique()
    assert values.min() == 0 and values.max() == 255 and len(values) > 10


def test_sprites_cache_is_reused_and_rebuilt_when_parameters_change(tmp_path, monkeypatch):
    dm = sprites(tmp_path)
    (array,) = tmp_path.glob("sprites-*.npy")
    manifest = json.loads(array.with_suffix(".json").read_text())
    assert manifest["params"]["shapes"] == ["square", "ellipse", "heart"]
    built = array.stat().st_mtime_ns
    render = SpritesDataModule.render
    calls = []

    def counted(self, out):
        calls.append(out.shape)
        render(self, out)

    monkeypatch.setattr(SpritesDataModule, "render", counted)
    again = sprites(tmp_path)
    assert calls == [] and array.stat().st_mtime_ns == built
    assert torch.equal(again.images("test"), dm.images("test"))
    other = sprites(tmp_path, orientations=2)
    assert calls == [(450, 1, 24, 24)] and other.factor_sizes == [3, 3, 2, 5, 5]
    array.with_suffix(".json").write_text("{not json")
    sprites(tmp_path)
    assert len(calls) == 2, "an unreadable manifest means a rebuild"
    array.with_suffix(".json").unlink()
    sprites(tmp_path)
    assert len(calls) == 3, "a missing manifest means a rebuild"


def test_sprites_reach_the_dsprites_grid_and_refuse_impossible_ones(tmp_path):
    dm = SpritesDataModule(cache_dir=str(tmp_path), orientations=40, positions=32)
    assert dm.grid_shape == (3, 6, 40, 32, 32)
    with pytest.raises(ValueError, match="data.positions=40"):
        SpritesDataModule(cache_dir=str(tmp_path), positions=40)
    with pytest.raises(ValueError, match="data.shapes"):
        SpritesDataModule(cache_dir=str(tmp_path), shapes=["square", "star"])


# -- missing and malformed files ---------------------------------------------------------------
def test_missing_files_name_the_file_and_the_sprites_alternative(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dsprites_ndarray_co1sh3sc6or40x32y32_64x64\.npz"
                                                r".*deepmind/dsprites-dataset.*data=sprites"):
        DSpritesDataModule(data_dir=str(tmp_path)).setup()
    with pytest.raises(FileNotFoundError, match=r"3dshapes\.h5.*deepmind/3d-shapes.*data=sprites"):
        Shapes3DDataModule(data_dir=str(tmp_path)).setup()


def test_malformed_files_are_named_with_the_fix(tmp_path):
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(FactorFileError, match=r"text\.npz.*data=sprites"):
        dsprites(tmp_path, file_name="text.npz")
    np.savez_compressed(tmp_path / "nolabels.npz", imgs=spell(np.arange(4)))
    with pytest.raises(FactorFileError, match=r"nolabels\.npz has no array 'latents_classes'"):
        dsprites(tmp_path, file_name="nolabels.npz")
    write_dsprites(tmp_path / "full.npz")
    data = (tmp_path / "full.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(FactorFileError, match=r"cut\.npz.*data=sprites"):
        dsprites(tmp_path, file_name="cut.npz")
    (tmp_path / "3dshapes.h5").write_bytes(b"\x89HDF broken")
    with pytest.raises(FactorFileError, match=r"3dshapes\.h5 is not a readable.*data=sprites"):
        shapes3d_dm(tmp_path)
    assert not list((tmp_path / "cache").glob("*.json")), "no cache from a broken file"


def test_unwritable_cache_folder_names_data_cache_dir(tmp_path):
    write_dsprites(tmp_path / "dsprites.npz")
    write_shapes3d(tmp_path / "3dshapes.h5")
    (tmp_path / "a_file").write_text("")
    blocked = str(tmp_path / "a_file" / "cache")
    for dm in (DSpritesDataModule(data_dir=str(tmp_path), file_name="dsprites.npz",
                                  cache_dir=blocked, val_size=30, test_size=30),
               Shapes3DDataModule(data_dir=str(tmp_path), cache_dir=blocked, val_size=10,
                                  test_size=10, image_shape=(3, 4, 16)),
               SpritesDataModule(cache_dir=blocked, **TINY_SPRITES)):
        with pytest.raises(CacheWriteError, match="set data.cache_dir to a writable folder"):
            dm.setup()


# -- training ----------------------------------------------------------------------------------
@pytest.mark.integration
def test_debug_run_trains_on_sprites(make_cfg, tmp_path):
    cfg = make_cfg([
        "data=sprites", f"data.cache_dir={tmp_path / 'sprites'}", "data.image_size=16",
        "data.scales=2", "data.orientations=2", "data.positions=4", "data.val_size=32",
        "data.test_size=32", "data.batch_size=32", "data.eval_batch_size=32",
        "model.latent_dim=2", "debug=fdr",
    ])
    metrics = train(cfg)
    assert "test/elbo" in metrics and np.isfinite(float(metrics["test/elbo"]))
