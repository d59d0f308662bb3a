"""Streamed image folders as tf.data pipelines: TensorFlow decodes what it decodes exactly as Pillow does.

Decoding with Pillow on Python threads holds the interpreter's lock for part of every file, and Keras's training
loop needs that lock too: on a 2-core machine a folder of 224x224 PNGs trained 20 % slower that way than with
TensorFlow's own decoders in a parallel ``map`` (benchmarks/RESULTS-input.md). So a PNG or JPEG file that needs
no resizing is decoded by TensorFlow, and every other file (another format, a 16-bit PNG, another size) goes to
:func:`dltool.data.images.read_image` through ``tf.numpy_function``. Both give the same pixels: JPEGs are decoded
with libjpeg's accurate integer DCT (Pillow's; TensorFlow's default differs by up to 9 levels), and colours are
converted with Pillow's own formulas (tests/data_sources/test_image_pipeline.py checks every case against Pillow).
"""

from __future__ import annotations

from .images import CHANNELS, ImageSettings

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
# Pillow's rgb2l (libImaging/Convert.c): L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16
_LUMA = (19595, 38470, 7471)


def _png_header(tf, contents):
    """(width, height, bit depth) from a PNG's IHDR chunk, which the format puts first."""
    size = tf.io.decode_raw(tf.strings.substr(contents, 16, 8), tf.uint8)
    size = tf.cast(size, tf.int32)
    width = size[0] * 2**24 + size[1] * 2**16 + size[2] * 2**8 + size[3]
    height = size[4] * 2**24 + size[5] * 2**16 + size[6] * 2**8 + size[7]
    depth = tf.cast(tf.io.decode_raw(tf.strings.substr(contents, 24, 1), tf.uint8)[0], tf.int32)
    return width, height, depth


def _to_channels(tf, image, channels: int):
    """An image decoded with its own channels (1 L, 2 LA, 3 RGB, 4 RGBA) in ``channels``, as Pillow's convert
    to L, RGB or RGBA gives it: alpha dropped or made opaque, grey repeated, colour to grey by Pillow's luma."""
    native = tf.shape(image)[-1]
    opaque = tf.fill(tf.concat([tf.shape(image)[:-1], [1]], 0), tf.constant(255, tf.uint8))

    def grey():
        return image[..., :1]

    def luma():
        rgb = tf.cast(image[..., :3], tf.int32)
        weighted = rgb[..., 0:1] * _LUMA[0] + rgb[..., 1:2] * _LUMA[1] + rgb[..., 2:3] * _LUMA[2] + 0x8000
        return tf.cast(tf.bitwise.right_shift(weighted, 16), tf.uint8)

    def grey_as_rgb():
        return tf.tile(image[..., :1], [1, 1, 3])

    if channels == 1:
        return tf.cond(native <= 2, grey, luma)
    if channels == 3:
        return tf.cond(native <= 2, grey_as_rgb, lambda: image[..., :3])
    return tf.case(
        [
            (tf.equal(native, 1), lambda: tf.concat([grey_as_rgb(), opaque], -1)),
            (tf.equal(native, 2), lambda: tf.concat([grey_as_rgb(), image[..., 1:2]], -1)),
            (tf.equal(native, 3), lambda: tf.concat([image, opaque], -1)),
        ],
        default=lambda: image,
    )


def file_decoder(settings: ImageSettings, read_with_pillow):
    """A tf function (path, row) -> uint8 pixels of ``settings.shape``: TensorFlow's decoder for a PNG (8 bits or
    fewer per channel) or JPEG already of the right size, else ``read_with_pillow(row)`` (a numpy function)."""
    import tensorflow as tf

    height, width = settings.size
    channels = CHANNELS[settings.color_mode]
    shape = settings.shape

    def with_pillow(row):
        pixels = tf.numpy_function(read_with_pillow, [row], tf.uint8, stateful=False)
        return tf.reshape(pixels, shape)

    def decode(path, row):
        contents = tf.io.read_file(path)
        head = tf.strings.substr(contents, 0, 8)
        is_png = tf.equal(head, PNG_MAGIC)
        is_jpeg = tf.equal(tf.strings.substr(head, 0, 3), JPEG_MAGIC)

        def png_fits():
            png_width, png_height, depth = _png_header(tf, contents)
            return (png_width == width) & (png_height == height) & (depth <= 8)

        def jpeg_fits():
            jpeg_shape = tf.io.extract_jpeg_shape(contents)
            return (jpeg_shape[0] == height) & (jpeg_shape[1] == width)

        def native_png():
            return tf.reshape(_to_channels(tf, tf.io.decode_png(contents, channels=0), channels), shape)

        def native_jpeg():
            image = tf.io.decode_jpeg(contents, channels=0, dct_method="INTEGER_ACCURATE")
            return tf.reshape(_to_channels(tf, image, channels), shape)

        png = tf.cond(is_png, png_fits, lambda: tf.constant(False))
        jpeg = tf.cond(is_jpeg & tf.logical_not(is_png), jpeg_fits, lambda: tf.constant(False))
        return tf.case([(png, native_png), (jpeg, native_jpeg)], default=lambda: with_pillow(row))

    return decode


def scaled(tf, pixels, preprocessing):
    """Model inputs from a batch of uint8 pixels, as ``preprocessing.transform`` gives them (float32, scaled,
    standardized), computed by TensorFlow in the pipeline rather than by numpy under the interpreter's lock."""
    x = tf.cast(pixels, tf.float32)
    if preprocessing.scale is not None:
        x = x / tf.constant(preprocessing.scale, tf.float32)
    if preprocessing.mean is not None:
        x = (x - tf.constant(preprocessing.mean, tf.float32)) / tf.constant(preprocessing.std, tf.float32)
    return x
