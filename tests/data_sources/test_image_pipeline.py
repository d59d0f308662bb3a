"""Streamed image folders through tf.data (dltool.data.image_pipeline and StreamedImages.dataset): TensorFlow's
decoders give Pillow's pixels for every kind of file, the pipeline gives the batches the numpy path gives, each
process its share, caches filled and read, and a file TensorFlow cannot decode named."""

from __future__ import annotations

import io

import numpy as np
import pytest
from test_image_stream import batches, config, make_folder

from dltool.data import prepare_data
from dltool.data.image_pipeline import file_decoder
from dltool.data.images import ImageSettings, read_image
from dltool.data.streaming import TEST, TRAIN, VALIDATION

Image = pytest.importorskip("PIL.Image")
pytestmark = pytest.mark.slow  # every test here runs TensorFlow (imported by the fixture, not at collection)


@pytest.fixture
def tf():
    return pytest.importorskip("tensorflow")


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DLTOOL_CACHE_DIR", str(tmp_path / "cache"))


def _source_image(mode: str, size=(12, 10)) -> Image.Image:
    rng = np.random.default_rng(len(mode))
    rgb = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), mode="RGB")
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (size[1], size[0]), dtype=np.uint16))
    if mode == "P":
        return rgb.quantize(17)
    return rgb.convert(mode)


FILES = {
    "png-rgb": ("RGB", "PNG", {}),
    "png-grey": ("L", "PNG", {}),
    "png-grey-alpha": ("LA", "PNG", {}),
    "png-rgba": ("RGBA", "PNG", {}),
    "png-palette": ("P", "PNG", {}),
    "png-bilevel": ("1", "PNG", {}),
    "png-16-bit": ("I;16", "PNG", {}),
    "png-interlaced": ("RGB", "PNG", {"interlace": 1}),
    "jpeg": ("RGB", "JPEG", {"quality": 90}),
    "jpeg-444": ("RGB", "JPEG", {"quality": 75, "subsampling": 0}),
    "jpeg-progressive": ("RGB", "JPEG", {"quality": 95, "progressive": True}),
    "jpeg-grey": ("L", "JPEG", {"quality": 85}),
    "jpeg-cmyk": ("CMYK", "JPEG", {"quality": 90}),
    "bmp": ("RGB", "BMP", {}),
    "gif": ("P", "GIF", {}),
    "webp": ("RGB", "WEBP", {"lossless": True}),
}


@pytest.mark.parametrize("name", sorted(FILES))
@pytest.mark.parametrize("color_mode", ["rgb", "grayscale", "rgba"])
@pytest.mark.parametrize("size", [(12, 10), (7, 9)], ids=["same-size", "resized"])
def test_tensorflow_and_pillow_give_a_file_the_same_pixels(tmp_path, tf, name, color_mode, size):
    mode, fmt, options = FILES[name]
    path = tmp_path / f"{name}.{fmt.lower()}"
    _source_image(mode).save(path, fmt, **options)
    settings = ImageSettings(size=(size[1], size[0]), color_mode=color_mode)
    expected = read_image(path, settings)
    used_pillow = []

    def with_pillow(row):
        used_pillow.append(int(row))
        return read_image(path, settings)

    decoded = file_decoder(settings, with_pillow)(tf.constant(str(path)), tf.constant(0, tf.int64)).numpy()
    np.testing.assert_array_equal(decoded, expected)
    native = size == (12, 10) and fmt in ("PNG", "JPEG") and mode != "I;16"
    assert used_pillow == ([] if native else [0])  # TensorFlow decodes what it decodes as Pillow does


def _pipeline_batches(data, split, batch_size=5, shuffle=False, shared=False):
    xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in data.dataset(split, batch_size, shuffle, None, shared)))
    return xs, ys


@pytest.mark.parametrize("extra", [{}, {"scale": 255, "standardize": True}])
def test_the_pipeline_gives_the_batches_of_the_numpy_path(tmp_path, extra):
    folder = make_folder(tmp_path / "photos")  # a third of the files native, the others resized by Pillow
    data = prepare_data(config(folder, **extra))
    for split, shuffle in [(TRAIN, True), (VALIDATION, False), (TEST, False)]:
        data.start_epoch(2)
        xs, ys = _pipeline_batches(data, split, shuffle=shuffle)
        expected_x, expected_y = zip(*data.iter_split(split, 5, shuffle))
        assert [len(x) for x in xs] == [len(x) for x in expected_x]
        np.testing.assert_array_equal(np.concatenate(xs), np.concatenate(expected_x))
        np.testing.assert_array_equal(np.concatenate(ys), np.concatenate(expected_y))
    assert data.dataset(TRAIN, 5, True, None).cardinality().numpy() == -(-data.counts[TRAIN] // 5)


def test_each_process_gets_its_share_through_the_pipeline(tmp_path):
    folder = make_folder(tmp_path / "photos")
    for process in range(2):
        data = prepare_data(config(folder))
        data.keep_share(2, process, 2, 8)
        data.start_epoch(3)
        xs, ys = _pipeline_batches(data, TRAIN, batch_size=4, shuffle=True, shared=True)
        expected = list(data._shared(TRAIN, 4, True, None))
        assert [len(x) for x in xs] == [len(x) for x, _ in expected]
        np.testing.assert_array_equal(np.concatenate(xs), np.concatenate([x for x, _ in expected]))
        np.testing.assert_array_equal(np.concatenate(ys), np.concatenate([y for _, y in expected]))


def test_the_pipeline_fills_a_disk_cache_that_a_later_run_reads(tmp_path):
    folder = make_folder(tmp_path / "photos")
    first = prepare_data(config(folder, cache="disk"))
    reference = {split: _pipeline_batches(first, split) for split in (TRAIN, VALIDATION, TEST)}
    assert first.sizes()["cache"]["state"] == "built"
    second = prepare_data(config(folder, cache="disk"))
    assert second.sizes()["cache"]["state"] == "reused"
    for file in folder.rglob("*.png"):  # a reused cache reads no file
        file.write_bytes(b"gone")
    for split, (xs, ys) in reference.items():
        again_x, again_y = _pipeline_batches(second, split)
        np.testing.assert_array_equal(np.concatenate(again_x), np.concatenate(xs))
        np.testing.assert_array_equal(np.concatenate(again_y), np.concatenate(ys))


def test_a_file_tensorflow_cannot_decode_is_named(tmp_path, tf):
    folder = make_folder(tmp_path / "photos")
    data = prepare_data(config(folder))
    bad = data.listing.files[data._rows[TRAIN][-1]]
    # A PNG of the right size whose image data is cut short: TensorFlow's decoder takes it, and fails on it.
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(buffer, "PNG")
    bad.write_bytes(buffer.getvalue()[:-30])
    with pytest.raises(tf.errors.OpError):
        _pipeline_batches(data, TRAIN)
    message = str(data.failure)
    assert message.startswith(f"{bad}: cannot read as an image (TensorFlow: ")
    assert message.endswith("; or set data.on_bad_file: skip to leave such files out")


def test_on_bad_file_skip_reads_through_pillow_and_keeps_batches_whole(tmp_path):
    folder = make_folder(tmp_path / "photos")
    (folder / "red" / "red03.png").write_bytes(b"not a png")
    data = prepare_data(config(folder, on_bad_file="skip"))
    xs, _ = _pipeline_batches(data, TRAIN, batch_size=4)
    assert [len(x) for x in xs][:-1] == [4] * (len(xs) - 1)
    assert sum(len(x) for x in xs) == data.counts[TRAIN]
    np.testing.assert_array_equal(np.concatenate(xs), batches(data, TRAIN, batch_size=4)[0])


def test_a_pass_over_files_all_cached_reads_whole_batches_from_the_cache(tmp_path, monkeypatch):
    from dltool.data import image_stream

    folder = make_folder(tmp_path / "photos")
    data = prepare_data(config(folder, cache="memory"))
    data.start_epoch(1)
    _pipeline_batches(data, TRAIN, shuffle=True)  # decodes every training file, filling the cache
    assert data.cache.cached(data._rows[TRAIN]).all()
    data._pending.clear()
    monkeypatch.setattr(image_stream, "read_image", lambda *args: pytest.fail("a cached file was decoded"))
    data.start_epoch(2)
    xs, ys = _pipeline_batches(data, TRAIN, shuffle=True)
    assert data._pending == {}  # no batch went through the per-file stage
    expected_x, expected_y = zip(*data.iter_split(TRAIN, 5, True))
    np.testing.assert_array_equal(np.concatenate(xs), np.concatenate(expected_x))
    np.testing.assert_array_equal(np.concatenate(ys), np.concatenate(expected_y))
