"""Streamed image folders as tf.data pipelines: TensorFlow decodes what it decodes exactly as Pillow does.

Decoding with Pillow on Python threads holds the interpreter's lock for part of every file, and Keras's training
loop needs that lock too: on a 2-core machine a folder of 224x224 PNGs trained 20 % slower that way than with
TensorFlow's own decoders in a parallel ``map`` (benchmarks/RESULTS-image-stream.md, RESULTS-input.md). So a PNG
or JPEG file that needs no resizing is decoded by TensorFlow, and every other file (another format, a 16-bit PNG,
another size) goes to :func:`dltool.data.images.read_image` through ``tf.numpy_function``. Both give the same
pixels: JPEGs are decoded with libjpeg's accurate integer DCT (Pillow's; TensorFlow's default differs by up to 9
levels), and colours are converted with Pillow's own formulas (tests/data_sources/test_image_pipeline.py checks
every case against Pillow).
"""

from __future__ import annotations

from .images import CHANNELS, ImageSettings

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
# Pillow's rgb2l (libImaging/Convert.c): L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16
_LUMA = (19595, 38470, 7471)


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


def file_decoder(settings: ImageSettings, read_with_pillow, read_cached=None):
    """A tf function (path, row, cached) -> uint8 pixels of ``settings.shape``: ``read_cached(row)`` (a numpy
    function) where ``cached``; TensorFlow's decoder for a PNG (8 bits or fewer per channel) or JPEG already of
    the right size; else ``read_with_pillow(row)`` (a numpy function).

    The header is read without branching (its first 26 bytes, padded) and nested ``cond``s pick the way: each
    branch op TensorFlow runs per file costs about as much as decoding a small PNG (a ``switch_case`` and
    per-channel ``cond``s made 64x64 PNGs 25 % slower than a bare ``decode_png`` map; these, about 10 %).
    """
    import tensorflow as tf

    height, width = settings.size
    channels = CHANNELS[settings.color_mode]
    shape = settings.shape
    png_magic = list(PNG_MAGIC)
    jpeg_magic = list(JPEG_MAGIC)

    def numpy_read(function, row):
        return tf.reshape(tf.numpy_function(function, [row], tf.uint8, stateful=False), shape)

    def native(image):
        # RGB straight from the decoder: libpng and libjpeg repeat grey and drop alpha as Pillow's convert does.
        return tf.reshape(image if channels == 3 else _to_channels(tf, image, channels), shape)

    def decode(path, row, cached=False):
        contents = tf.io.read_file(path)
        head = tf.strings.substr(tf.strings.join([tf.strings.substr(contents, 0, 26), b"\0" * 26]), 0, 26)
        head = tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int32)
        is_png = tf.reduce_all(tf.equal(head[:8], png_magic))
        png_width = head[16] * 2**24 + head[17] * 2**16 + head[18] * 2**8 + head[19]
        png_height = head[20] * 2**24 + head[21] * 2**16 + head[22] * 2**8 + head[23]
        png_fits = is_png & tf.equal(png_width, width) & tf.equal(png_height, height) & (head[24] <= 8)
        is_jpeg = tf.reduce_all(tf.equal(head[:3], jpeg_magic))
        decoded_channels = 3 if channels == 3 else 0

        def png():
            return native(tf.io.decode_png(contents, channels=decoded_channels))

        def jpeg():
            jpeg_shape = tf.io.extract_jpeg_shape(contents)
            return tf.cond(
                tf.equal(jpeg_shape[0], height) & tf.equal(jpeg_shape[1], width),
                lambda: native(tf.io.decode_jpeg(contents, channels=decoded_channels, dct_method="INTEGER_ACCURATE")),
                lambda: numpy_read(read_with_pillow, row),
            )

        def decoded():
            return tf.cond(png_fits, png, lambda: tf.cond(is_jpeg, jpeg, lambda: numpy_read(read_with_pillow, row)))

        if read_cached is None:
            return decoded()
        return tf.cond(cached, lambda: numpy_read(read_cached, row), decoded)

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
