"""Image files in, uint8 BGR arrays out: decoding with OpenCV or Pillow.

`load_image(path, loader, size)` decodes any image file the two libraries
read (JPEG, PNG, BMP, TIFF, WebP, ...) and resizes it, as Caffe prepared
the images bvlc_alexnet learned from. Both loaders give the same arrays to
within a JPEG rounding, and they refuse the same files, with an ImageError
that names the file and says what is wrong:

* missing, empty, or not an image at all;
* too small to learn from (MIN_SIDE) or too large to decode (MAX_PIXELS,
  checked from the header, before a decompression bomb fills the memory);
* a JPEG whose compressed data is damaged (see jpegscan.py): libjpeg would
  only print "Corrupt JPEG data" and return a partly grey or scrambled
  picture, which would then train the net as if it were a flower;
* floating-point or 32-bit samples (float TIFFs): no fixed scale maps
  them to 0..255, so rather than guess one, both loaders refuse them.

Reduced decoding: a large JPEG is decoded directly at 1/2, 1/4 or 1/8 of
its size when that still covers (97% of) the target (`reduction`), much
cheaper than decoding every pixel only to average them away.
"""
import io

import numpy as np

import jpegscan

LOADERS = ('opencv', 'pil')

#: The scales at which libjpeg decodes a JPEG directly, largest first: it
#: skips the fine detail of each 8x8 block, so a 1/2-scale decode does about
#: a quarter of the work. Pillow exposes it as `Image.draft`, OpenCV as the
#: IMREAD_REDUCED_COLOR_* flags.
JPEG_SCALES = (8, 4, 2)

#: How small a reduced decode may come out, as a fraction of the target
#: side: 0.97 lets a photo whose shorter side is 500 pixels (every Oxford
#: 102 photo) decode at 250 and be enlarged by 2.4% to 256, for a fraction
#: of the decoding time and a small difference (see `reduction`). 1.0
#: would never enlarge, and reduce none of them.
REDUCE_MIN_FRACTION = 0.97

#: Images with more pixels than this are refused before decoding, by both
#: loaders alike: Pillow's limit against decompression bombs (a small file
#: that decodes to gigabytes); photos are 10 to 50 megapixels.
MAX_PIXELS = 89478485

#: Images with a side shorter than this are refused: upscaling a thumbnail
#: (or a 1x1 tracking pixel) to 256x256 gives no picture to learn from.
MIN_SIDE = 16


class ImageError(IOError):
    """An image that cannot be used; the message names the file.

    `kind` says what is wrong, for reports that group the problems:
    'missing', 'empty', 'too small', 'too large', 'corrupt JPEG data',
    'unsupported samples' or 'unreadable'.
    """

    def __init__(self, message, kind='unreadable'):
        IOError.__init__(self, message)
        self.kind = kind

    def __str__(self):
        return self.args[0]


def load_image(path, loader='opencv', size=(256, 256), reduce=True):
    """Decode an image file to a uint8 BGR array of `size` (width, height).

    Any mode (grayscale, RGBA, palette, CMYK, 16-bit) comes out as 3
    channels. Downscaling averages over the source pixels (OpenCV's
    INTER_AREA, Pillow's antialiased BILINEAR), which the two libraries
    compute almost identically; plain bilinear sampling would alias.

    `reduce`: with True (the default) a JPEG whose shorter side is at least
    497 pixels (2 x 0.97 x 256) is decoded directly at 1/2, 1/4 or 1/8
    scale (see `reduction`), then resized as usual; False decodes every
    pixel. A number sets the smallest fraction of the target a reduced
    decode may have (True is REDUCE_MIN_FRACTION, 0.97; 1.0 never
    enlarges).

    A file that cannot be used raises ImageError, whose message names it
    and says why, and whose `kind` says which of the cases listed at the
    top of this module it is.
    """
    if loader not in LOADERS:
        raise ValueError('loader must be one of %s, not %r'
                         % (LOADERS, loader))
    data = _read_file(path)
    scan = jpegscan.ScanCheck(data)  # structure only: microseconds
    if scan.fault:
        raise ImageError('cannot decode image %s: %s' % (path, scan.fault),
                         'corrupt JPEG data')
    if loader == 'opencv':
        return _load_opencv(path, data, scan, size, reduce)
    return _load_pil(path, data, scan, size, reduce)


def reduction(width, height, size, reduce=True):
    """By how much (1, 2, 4 or 8) to shrink a width x height JPEG while
    decoding it, before the final resize to `size`.

    The largest scale whose image still covers the target on both sides,
    to within REDUCE_MIN_FRACTION (True) or the fraction `reduce`:
    min(width, height) / factor >= max(size) * fraction. The smaller side
    against the larger target side, because the EXIF orientation, applied
    after decoding, may swap width and height. So for a 256x256 target a
    500x667 Oxford photo decodes at 250x334 (250 >= 0.97 * 256), a
    1000x1333 one at 250x334 too, but a 480x640 one at full size.

    The cost in quality, measured by benchmarks/bench_loaders.py (figures
    in the README), stays well under the mean difference of 3.0 in 0..255
    that the project allows, hence on by default; `reduce=False` decodes
    every pixel.
    """
    if not reduce:
        return 1
    fraction = (REDUCE_MIN_FRACTION if isinstance(reduce, (bool, np.bool_))
                else float(reduce))
    needed = max(size) * fraction
    for factor in JPEG_SCALES:
        if min(width, height) >= factor * needed:
            return factor
    return 1


def _read_file(path):
    """The bytes of an image file, or an ImageError saying why not."""
    try:
        # np.fromfile, not open(): works for any file name, and gives the
        # uint8 array that cv2.imdecode takes without a copy.
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageError('image %s not found' % path, 'missing')
    except OSError as error:
        raise ImageError('cannot read image %s: %s' % (path, error))
    if not data.size:
        raise ImageError('image %s is an empty file (0 bytes)' % path, 'empty')
    return data


def _load_opencv(path, data, scan, size, reduce):
    import cv2
    header = _header(path, data)
    factor = 1
    if header:  # before decoding a bomb, or samples without a scale
        _check_size(path, header.width, header.height)
        _check_samples(path, header.mode, header.format)
        if header.format == 'JPEG':
            factor = reduction(header.width, header.height, size, reduce)
    damage = scan.decode()  # a quick second decode by Pillow (jpegscan.py)
    if damage:
        raise ImageError('cannot decode image %s: %s' % (path, damage),
                         'corrupt JPEG data')
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
             4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
    try:
        image = cv2.imdecode(data, flags[factor])
    except cv2.error as error:  # e.g. more pixels than OpenCV allows
        raise ImageError('cannot decode image %s: %s' % (path, error))
    if image is None:
        _refuse_undecodable(path, data)
    _check_size(path, image.shape[1], image.shape[0])
    if image.shape[1] > size[0] or image.shape[0] > size[1]:
        interpolation = cv2.INTER_AREA
    else:
        interpolation = cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation)


class _Header(object):
    def __init__(self, image):
        self.width, self.height = image.size
        self.mode, self.format = image.mode, image.format


def _header(path, data):
    """The image's size, mode and format from its header (a _Header), or
    None for what Pillow cannot parse (OpenCV then decodes it or not).

    OpenCV has to be told the scale before it decodes, and a huge image
    must be refused before it is decoded, so the size comes first: Pillow's
    Image.open reads only the header (the pixels wait for the first use),
    some microseconds per file. Reduced decoding is only asked of JPEGs:
    OpenCV would decode any other format whole and then shrink it.
    """
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as image:
            return _Header(image)
    except Image.DecompressionBombError as error:
        raise ImageError('image %s is too large: %s' % (path, error),
                         'too large')
    except Exception:  # any parse failure: OpenCV's turn
        return None


def _load_pil(path, data, scan, size, reduce):
    from PIL import Image, ImageOps
    try:
        # scan.file feeds the bytes to Pillow so that the decoding itself
        # shows whether the compressed data is whole (jpegscan.py).
        with Image.open(scan.file) as image:
            _check_size(path, *image.size)
            _check_samples(path, image.mode, image.format)
            factor = reduction(*image.size, size, reduce)
            if factor > 1:  # a no-op for formats other than JPEG
                image.draft('RGB', (image.width // factor,
                                    image.height // factor))
            image.load()
            image = ImageOps.exif_transpose(image)  # as OpenCV does
            image = _to_8_bits(image)
            rgb = np.asarray(image.convert('RGB').resize(size, Image.BILINEAR))
    except Image.DecompressionBombError as error:
        raise ImageError('image %s is too large: %s' % (path, error),
                         'too large')
    except (OSError, ValueError, SyntaxError) as error:
        if isinstance(error, ImageError):
            raise
        damage = scan.damage(error)
        if damage:
            raise ImageError('cannot decode image %s: %s' % (path, damage),
                             'corrupt JPEG data')
        _refuse_undecodable(path, data, error)
    damage = scan.damage()
    if damage:
        raise ImageError('cannot decode image %s: %s' % (path, damage),
                         'corrupt JPEG data')
    return np.ascontiguousarray(rgb[:, :, ::-1])  # RGB -> BGR


def _to_8_bits(image):
    """16-bit grayscale (mode I;16, or I from a PNG or PGM) as 8 bits: the
    high byte (OpenCV rounds value/257 for some formats: at most 1 apart)."""
    from PIL import Image
    if image.mode.startswith('I'):
        gray = np.asarray(image).astype(np.uint32) >> 8
        return Image.fromarray(np.minimum(gray, 255).astype(np.uint8))
    return image


def _check_size(path, width, height):
    """Refuse images too small to learn from or too large to decode."""
    if width * height > MAX_PIXELS:
        raise ImageError('image %s is too large: %dx%d pixels, more than %d '
                         '(shrink it first, or it may be a decompression '
                         'bomb)' % (path, width, height, MAX_PIXELS),
                         'too large')
    if min(width, height) < MIN_SIDE:
        raise ImageError('image %s is only %dx%d pixels, too small for '
                         'AlexNet (at least %d per side)'
                         % (path, width, height, MIN_SIDE), 'too small')


def _check_samples(path, mode, image_format):
    """Refuse floating-point samples (Pillow's mode F) and 32-bit integer
    ones (mode I from a TIFF; 16-bit PNGs and PGMs also open as I in some
    Pillow versions, and are read as 16-bit)."""
    if mode == 'F':
        _refuse_samples(path, 'floating-point')
    if mode == 'I' and image_format == 'TIFF':
        _refuse_samples(path, '32-bit integer')


def _refuse_samples(path, what):
    raise ImageError(
        'image %s holds %s samples (a float or 32-bit TIFF?): no fixed scale '
        'maps them to the 0..255 of a photo, so neither loader guesses one. '
        'Save it as an 8-bit (or 16-bit) image, e.g. '
        'cv2.imwrite(path, np.clip(array * 255, 0, 255).astype(np.uint8)) '
        'for values in 0..1.' % (path, what), 'unsupported samples')


def _refuse_undecodable(path, data, error=None):
    """Raise the clearest ImageError for a file neither library decoded:
    samples without a scale (a float TIFF that Pillow cannot even open, or
    that OpenCV will not convert), or a damaged or foreign file."""
    import cv2
    try:
        raw = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        raw = None
    if raw is not None and raw.dtype.kind == 'f':
        _refuse_samples(path, 'floating-point')
    if raw is not None and raw.dtype.itemsize >= 4:
        _refuse_samples(path, '32-bit integer')
    reason = (': %s' % error) if error else ''
    raise ImageError('cannot decode image %s: not an image, or a truncated '
                     'or corrupt file%s' % (path, reason))
