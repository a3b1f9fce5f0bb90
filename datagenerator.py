"""Image lists in, batches for AlexNet out: decoding, augmentation, batching.

A list file has one image per line, `<path> <label>`:

    jpg/image_00001.jpg 76
    # comments and blank lines are ignored
    my photos/rose 2.jpg 3        <- the label is the last field, so a path
                                     may hold spaces

`ImageDataGenerator` turns such a list into batches the way Caffe prepared
the images that bvlc_alexnet was trained on:

    training:   resize to 256x256, random 227x227 crop, random mirror
    evaluation: resize to 256x256, centre 227x227 crop

and returns float32 BGR images minus the ImageNet mean, with one-hot labels
(or, with `mean=None`, uint8 images whose mean the graph subtracts).
Two decoders are offered, OpenCV (`loader='opencv'`) and Pillow
(`loader='pil'`); both give the same arrays to within a JPEG rounding.

So that training never waits for data (tools/bench.py measures each part):

* worker threads decode the images of a batch in parallel, and a background
  thread prepares the next batches while the current step runs
  (`batches(..., prefetch=2)`, `prefetched`);
* a large JPEG is decoded directly at 1/2, 1/4 or 1/8 of its size when that
  still covers (97% of) the 256x256 target (`reduction`), much cheaper than
  decoding every pixel only to average them away;
* each image, once resized to 256x256, is kept as uint8 (`ImageCache`), so
  the epochs after the first decode no JPEG at all.
"""
import io
import math
import os
import queue
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: The ImageNet mean that Caffe subtracted, in BGR order.
IMAGENET_MEAN_BGR = np.array([104.007, 116.669, 122.679], dtype=np.float32)

LOADERS = ('opencv', 'pil')

#: The scales at which libjpeg decodes a JPEG directly, largest first: it
#: skips the fine detail of each 8x8 block, so a 1/2-scale decode does about
#: a quarter of the work. Pillow exposes it as `Image.draft`, OpenCV as the
#: IMREAD_REDUCED_COLOR_* flags.
JPEG_SCALES = (8, 4, 2)

#: How small a reduced decode may come out, as a fraction of the target
#: side: 0.97 lets a photo whose shorter side is 500 pixels (every Oxford
#: 102 photo) decode at 250 and be enlarged by 2.4% to 256, for a fraction
#: of the decoding time and a mean difference of about 1.5 in 0..255 (see
#: `reduction` for the figures). 1.0 would never enlarge, and reduce none
#: of them.
REDUCE_MIN_FRACTION = 0.97

#: How much memory an `ImageCache` may take before it moves to a file on
#: disk: 2 GB, about 10,000 images of 256x256 (196,608 bytes each). The
#: 1,020 training images of Oxford 102 take 200 MB.
CACHE_BUDGET = 2 * 10**9

#: A list with more bad lines than this shows only the first ones.
MAX_REPORTED_LINES = 50

#: Images with more pixels than this are refused before decoding, by both
#: loaders alike: Pillow's limit against decompression bombs (a small file
#: that decodes to gigabytes); photos are 10 to 50 megapixels.
MAX_PIXELS = 89478485

#: Images with a side shorter than this are refused: upscaling a thumbnail
#: (or a 1x1 tracking pixel) to 256x256 gives no picture to learn from.
MIN_SIDE = 16


class ListFileError(ValueError):
    """A list file that cannot be used; the message names every bad line."""


class ImageError(IOError):
    """An image that cannot be read; the message names the file."""


def read_list(list_file, replacementpath='', num_classes=None):
    """Parse a list file into (paths, labels, line_numbers).

    With `replacementpath` set, each path's folder is replaced by it and the
    file name kept: lists written on another machine work unchanged. Without
    it, relative paths are taken from the list file's own folder (not from
    wherever the script happens to be started).

    All problems of the file are collected and raised together in one
    `ListFileError`, each with its line number.
    """
    if not os.path.isfile(list_file):
        raise ListFileError('list file not found: %s' % list_file)
    base_dir = os.path.dirname(os.path.abspath(list_file))
    paths, labels, lines, problems, first_seen = [], [], [], [], {}
    with open(list_file, encoding='utf-8') as f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            problem = None
            fields = line.rsplit(None, 1)
            if len(fields) != 2:
                problem = 'no label: expected "<path> <label>"'
            elif not _is_int(fields[1]):
                problem = 'label %r is not an integer' % fields[1]
            elif num_classes and not 0 <= int(fields[1]) < num_classes:
                problem = ('label %s is outside 0..%d (num_classes is %d)'
                           % (fields[1], num_classes - 1, num_classes))
            elif fields[0] in first_seen:
                problem = ('%s is listed twice (first on line %d)'
                           % (fields[0], first_seen[fields[0]]))
            if problem:
                problems.append('  line %d: %s' % (number, problem))
                continue
            first_seen[fields[0]] = number
            paths.append(resolve_path(fields[0], replacementpath, base_dir))
            labels.append(int(fields[1]))
            lines.append(number)
    if problems:
        shown = problems[:MAX_REPORTED_LINES]
        if len(problems) > len(shown):  # a wrong file, not a few typos
            shown.append('  ... and %d more' % (len(problems) - len(shown)))
        raise ListFileError(
            '%s has %d bad line(s):\n%s\nEach line must be "<path> <label>" '
            'with an integer label from 0 to num_classes-1.'
            % (list_file, len(problems), '\n'.join(shown)))
    if not paths:
        raise ListFileError('%s lists no images' % list_file)
    return paths, labels, lines


def missing_images(paths, lines):
    """The (path, list line) of every listed image that is not on disk."""
    return [(path, line) for path, line in zip(paths, lines)
            if not os.path.isfile(path)]


def _is_int(text):
    try:
        int(text)
        return True
    except ValueError:
        return False


def resolve_path(path, replacementpath, base_dir):
    """Where the image of a list line lives on this machine."""
    if replacementpath:
        # Lists made on Windows use backslashes: take the file name either way.
        name = os.path.basename(path.replace('\\', '/'))
        return os.path.join(replacementpath, name)
    return os.path.join(base_dir, path)


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
    """
    if loader == 'opencv':
        return _load_opencv(path, size, reduce)
    if loader == 'pil':
        return _load_pil(path, size, reduce)
    raise ValueError('loader must be one of %s, not %r' % (LOADERS, loader))


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

    The cost in quality: the mean absolute difference of the final 256x256
    arrays against full decoding (0..255), measured with tools/bench.py's
    functions, and the loader speed-up on one thread of a 2-core AMD EPYC:

        The 2,346 real Oxford 102 photos here, all decoded at 1/2:
            OpenCV 1.51, Pillow 1.32 (on 300 of them: 2.6x and 1.7x faster).
        100 of them enlarged 2x (1000x1334, quality 90), decoded at 1/4:
            OpenCV 1.52, Pillow 1.26 (3.2x and 5.6x faster).
        With reduce=1.0 (never enlarge) the Oxford photos decode whole
            (0.00, no speed-up), and 1000x1334 ones at 1/2: about 0.3.

    All stay under the 3.0 that the project allows, hence on by default;
    `reduce=False` decodes every pixel.
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


def _load_opencv(path, size, reduce=True):
    import cv2
    try:
        # np.fromfile + imdecode instead of imread: works for any file name,
        # and a missing file raises instead of returning None.
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise ImageError('cannot read image %s: %s' % (path, error))
    header = _header_size(path, data)
    factor = 1
    if header:
        _check_size(path, header[0], header[1])  # before decoding a bomb
        if header[2]:
            factor = reduction(header[0], header[1], size, reduce)
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
             4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
    try:
        image = cv2.imdecode(data, flags[factor]) if data.size else None
    except cv2.error as error:  # e.g. more pixels than OpenCV allows
        raise ImageError('cannot decode image %s: %s' % (path, error))
    if image is None:
        raise ImageError('cannot decode image %s: not an image, or a '
                         'truncated or corrupt file' % path)
    _check_size(path, image.shape[1], image.shape[0])
    if image.shape[1] > size[0] or image.shape[0] > size[1]:
        interpolation = cv2.INTER_AREA
    else:
        interpolation = cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation)


def _header_size(path, data):
    """(width, height, is it a JPEG) from the file's header, or None for
    what Pillow cannot parse (OpenCV then decodes it or reports it).

    OpenCV has to be told the scale before it decodes, and a huge image
    must be refused before it is decoded, so the size comes first: Pillow's
    Image.open reads only the header (the pixels wait for the first use),
    some microseconds per file. Reduced decoding is only asked of JPEGs:
    OpenCV would decode any other format whole and then shrink it.
    """
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.width, image.height, image.format == 'JPEG'
    except Image.DecompressionBombError as error:
        raise ImageError('image %s is too large: %s' % (path, error))
    except Exception:
        return None


def _load_pil(path, size, reduce=True):
    from PIL import Image, ImageOps
    try:
        with Image.open(path) as image:
            _check_size(path, *image.size)
            factor = reduction(*image.size, size, reduce)
            if factor > 1:  # a no-op for formats other than JPEG
                image.draft('RGB', (image.width // factor,
                                    image.height // factor))
            image = ImageOps.exif_transpose(image)  # as OpenCV does
            if image.mode.startswith('I'):  # 16/32-bit integer grayscale
                bits = 16 if image.mode.startswith('I;16') else 32
                gray = np.asarray(image).astype(np.uint32) >> (bits - 8)
                image = Image.fromarray(gray.astype(np.uint8))
            image = image.convert('RGB').resize(size, Image.BILINEAR)
            rgb = np.asarray(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageError('cannot decode image %s: %s' % (path, error))
    return np.ascontiguousarray(rgb[:, :, ::-1])  # RGB -> BGR


def _check_size(path, width, height):
    """Refuse images too small to learn from or too large to decode."""
    if width * height > MAX_PIXELS:
        raise ImageError('image %s is too large: %dx%d pixels, more than %d '
                         '(shrink it first, or it may be a decompression '
                         'bomb)' % (path, width, height, MAX_PIXELS))
    if min(width, height) < MIN_SIDE:
        raise ImageError('image %s is only %dx%d pixels, too small for '
                         'AlexNet (at least %d per side)' % (path, width, height,
                                                             MIN_SIDE))


def check_dtype(images, tensor, class_list):
    """Refuse to feed a batch into a tensor of another dtype. TensorFlow
    would convert it silently: float32 images minus the mean would wrap
    around into uint8, uint8 pixels fed as float32 would miss the mean."""
    expected = np.dtype(tensor.dtype.as_numpy_dtype)
    if images.dtype != expected:
        raise TypeError(
            'the batches of %s are %s, but %s takes %s. Make the generator '
            'with mean=None for uint8 pixels (as training.open_data does), '
            'or with the default mean for float32 images minus the mean.'
            % (class_list, images.dtype, tensor.name, expected))


def default_workers():
    """Decoding threads when none are asked for: one per CPU core this
    process may use, at most 8.

    More threads than cores only take turns; and the cores are shared with
    TensorFlow's step, which prefetching overlaps with decoding.
    """
    try:
        cores = len(os.sched_getaffinity(0))  # honours taskset and containers
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


class ImageCache(object):
    """Every image of a list decoded and resized once, kept as uint8.

    One slot per list entry in `pixels` [count, height, width, 3]; `filled`
    says which slots hold their image. A 256x256 image takes 196,608 bytes,
    so the 1,020 Oxford training images take 200 MB, against 43 MB of JPEG
    files that cost about 3 ms each to decode again.

    mode 'memory': a NumPy array. np.empty only reserves the addresses; the
        system gives each page its memory when it is first written, so the
        cache grows as the first epoch fills it.
    mode 'disk': np.memmap over a temporary file in `folder` (the system's
        temporary folder by default), for lists whose images exceed the
        memory budget. The system keeps the recently used parts in memory and
        reads the rest back from disk, still far cheaper than decoding. The
        file has no name (`tempfile.TemporaryFile`), so it disappears when
        the cache does, even if the program is killed.

    Thread safety: the worker threads call `get` and `put` concurrently. A
    slot is written whole before its `filled` flag is set, so a reader never
    sees half an image; two threads loading the same entry at once (which
    the batches of one epoch never do) would write the same pixels.
    """

    def __init__(self, count, height, width, mode='memory', folder=None):
        shape = (count, height, width, 3)
        self.mode = mode
        if mode == 'memory':
            self.pixels = np.empty(shape, np.uint8)
        elif mode == 'disk':
            self._file = tempfile.TemporaryFile(prefix='imagecache_',
                                                dir=folder)
            self.pixels = np.memmap(self._file, np.uint8, 'w+', shape=shape)
        else:
            raise ValueError("cache mode must be 'memory' or 'disk', not %r"
                             % (mode,))
        self.filled = np.zeros(count, dtype=bool)

    @property
    def nbytes(self):
        return self.pixels.nbytes

    def get(self, index):
        """The image of list entry `index`, or None if not loaded yet."""
        return self.pixels[index] if self.filled[index] else None

    def put(self, index, image):
        self.pixels[index] = image
        self.filled[index] = True


#: The values of the `cache` argument (and of image_cache in finetune.py).
CACHE_MODES = ('auto', 'memory', 'disk', 'off')


def cache_mode(cache, nbytes, budget=CACHE_BUDGET):
    """'memory', 'disk' or None: where the images of `nbytes` are cached.

    cache='auto' keeps them in memory when they fit the `budget`, in a
    memory-mapped file otherwise; 'memory' and 'disk' force one;
    None (or False, 'off', 'none') turns the cache off.
    """
    if cache in (None, False, 'off', 'none'):
        return None
    if cache == 'auto':
        return 'memory' if nbytes <= budget else 'disk'
    if cache in ('memory', 'disk'):
        return cache
    raise ValueError("cache must be 'auto', 'memory', 'disk' or None, not %r"
                     % (cache,))


class ImageDataGenerator(object):
    """Batches of images and one-hot labels from a list file.

    The interface of the original OpenCV-era generator:

        gen = ImageDataGenerator('trainfile.txt', horizontal_flip=True,
                                 shuffle=True, nb_classes=102)
        for step in range(math.ceil(gen.data_size / 128)):
            images, labels = gen.next_batch(128)   # last batch may be smaller
        gen.reset_pointer()                        # next epoch, reshuffled

    or simply `for images, labels in gen.batches(128, prefetch=2): ...` for
    one epoch, the next batches made in the background.

    Args:
        class_list: the list file.
        horizontal_flip: mirror each image with probability 1/2.
        shuffle: visit the images in a new random order each epoch.
        mean: per-channel BGR mean to subtract: the batches are float32
            images minus the mean, as the original generator made them.
            None keeps the pixels as they are, uint8 0..255, for a graph
            that subtracts the mean itself (training.build_graph does): a
            quarter of the bytes to queue, and to copy to a GPU each step.
        scale_size: (width, height) of the crop fed to the net, 227x227.
        nb_classes: length of the one-hot label vectors.
        loader: 'opencv' or 'pil', the library that decodes and resizes.
        random_crop: random crops (training) instead of the centre crop;
            defaults to `horizontal_flip`, i.e. training-time augmentation.
        resize_size: (width, height) every image is first resized to.
        replacementpath: folder that replaces each listed path's folder.
        seed: makes the order, crops and flips reproducible. The draws of
            epoch e depend only on (seed, e), not on the batch size, on how
            many threads decode, on prefetching or on the image cache.
        workers: threads decoding images in parallel (OpenCV and Pillow
            release Python's lock while decoding); default_workers() if None.
        strict: stop at the first unreadable image (an ImageError naming it
            and its list line). By default such an image is skipped with one
            warning, left out of its batch (never replaced by a placeholder),
            and counted in `skipped`.
        reduce: decode large JPEGs at a reduced scale (see `load_image`).
        cache: keep the resized images between epochs (see `ImageCache`):
            'auto' (in memory if they fit `cache_budget` bytes, 2 GB, else
            in a memory-mapped file in `cache_dir`), 'memory', 'disk', or
            None. The budget is per generator: training and validation
            lists of Oxford 102 take 200 MB each.
            `cache_description()` says which; crops and mirrors are still
            drawn anew each epoch.
    """

    def __init__(self, class_list, horizontal_flip=False, shuffle=False,
                 mean=IMAGENET_MEAN_BGR, scale_size=(227, 227), nb_classes=2,
                 loader='opencv', random_crop=None, resize_size=(256, 256),
                 replacementpath='', seed=None, workers=None, strict=False,
                 reduce=True, cache='auto', cache_budget=CACHE_BUDGET,
                 cache_dir=None):
        if loader not in LOADERS:
            raise ValueError('loader must be one of %s, not %r'
                             % (LOADERS, loader))
        if workers is not None and workers < 1:
            raise ValueError('workers must be at least 1, not %r' % workers)
        self.horizontal_flip = horizontal_flip
        self.shuffle = shuffle
        self.mean = None if mean is None else np.asarray(mean, np.float32)
        self.scale_size = tuple(scale_size)
        self.resize_size = tuple(resize_size)
        self.n_classes = nb_classes
        self.loader = loader
        self.random_crop = horizontal_flip if random_crop is None else random_crop
        self.seed = (np.random.SeedSequence().entropy if seed is None
                     else seed)
        self.workers = workers or default_workers()
        self.strict = strict
        self.reduce = reduce
        self.skipped = {}  # list index -> why the image is skipped
        self.class_list = class_list
        self.images, self.labels, self.lines = read_list(
            class_list, replacementpath, nb_classes)
        self.data_size = len(self.labels)
        self.cache_budget = cache_budget
        self.cache = self._open_cache(cache, cache_budget, cache_dir)
        self.epoch = -1
        self.reset_pointer()

    def _open_cache(self, cache, budget, folder):
        width, height = self.resize_size
        mode = cache_mode(cache, self.data_size * width * height * 3, budget)
        if mode is None:
            return None
        return ImageCache(self.data_size, height, width, mode, folder)

    def cache_description(self):
        """One line saying whether and where the decoded images are kept."""
        if self.cache is None:
            return ('Image cache off for %s: every epoch decodes its %d '
                    'images.' % (self.class_list, self.data_size))
        where = {'memory': 'in memory',
                 'disk': 'in a memory-mapped temporary file'}[self.cache.mode]
        return ('Image cache %s for %s: %d images of %dx%d, %.0f MB (budget '
                '%.1f GB); epochs after the first decode no JPEG.'
                % (where, self.class_list, self.data_size, self.resize_size[0],
                   self.resize_size[1], self.cache.nbytes / 1e6,
                   self.cache_budget / 1e9))

    def reset_pointer(self, epoch=None):
        """Start the next epoch (or epoch number `epoch`, when resuming)."""
        self.epoch = self.epoch + 1 if epoch is None else epoch
        self.pointer = 0
        rng = np.random.default_rng([self.seed, self.epoch])
        n = self.data_size
        self.order = rng.permutation(n) if self.shuffle else np.arange(n)
        # One crop offset and one mirror flag per position of this epoch.
        margin_x = self.resize_size[0] - self.scale_size[0]
        margin_y = self.resize_size[1] - self.scale_size[1]
        if self.random_crop:
            self.offsets = np.stack([rng.integers(0, margin_y + 1, n),
                                     rng.integers(0, margin_x + 1, n)], 1)
        else:
            self.offsets = np.tile([margin_y // 2, margin_x // 2], (n, 1))
        self.flips = (rng.random(n) < 0.5 if self.horizontal_flip
                      else np.zeros(n, dtype=bool))

    def next_batch(self, batch_size):
        """The next `batch_size` images of this epoch and their labels.

        Returns (images [n, 227, 227, 3], labels [n, nb_classes]); the
        images are float32 minus the mean, or uint8 if `mean` is None. n is
        smaller than batch_size for the last batch, 0 past the end.
        """
        batch = slice(self.pointer, min(self.pointer + batch_size,
                                        self.data_size))
        self.pointer = batch.stop
        images, labels, _ = self._make_batch(
            self.order[batch], self.offsets[batch], self.flips[batch])
        return images, labels

    def batches(self, batch_size, prefetch=0):
        """Iterate over the rest of this epoch in batches.

        With `prefetch` > 0 a background thread makes the next batches while
        the caller works on the current one (see `prefetched`). Leave the
        generator alone while iterating: the thread moves its pointer.
        """
        def epoch():
            while self.pointer < self.data_size:
                yield self.next_batch(batch_size)
        return prefetched(epoch(), prefetch) if prefetch else epoch()

    def centre_batches(self, batch_size, prefetch=0):
        """Every readable image in list order, centre crop, not mirrored.

        Yields (list indices, images, labels) per batch, whatever the
        shuffling and augmentation of the epochs: what a fixed feature
        extractor needs (see featurecache.py). The indices say which entries
        the batch holds, as unreadable images are left out.
        """
        width, height = self.scale_size
        centre = [(self.resize_size[1] - height) // 2,
                  (self.resize_size[0] - width) // 2]

        def all_images():
            for start in range(0, self.data_size, batch_size):
                indices = np.arange(start, min(start + batch_size,
                                               self.data_size))
                images, labels, kept = self._make_batch(
                    indices, np.tile(centre, (len(indices), 1)),
                    np.zeros(len(indices), dtype=bool))
                yield kept, images, labels
        return prefetched(all_images(), prefetch) if prefetch else all_images()

    def steps_per_epoch(self, batch_size):
        return int(math.ceil(self.data_size / float(batch_size)))

    def one_hot(self, indices):
        """The labels of list entries `indices` as one-hot rows."""
        labels = np.zeros((len(indices), self.n_classes), np.float32)
        labels[np.arange(len(indices)), np.asarray(self.labels)[indices]] = 1
        return labels

    def _make_batch(self, indices, offsets, flips):
        """Crop and mirror the images of list entries `indices`, and subtract
        the mean (unless `mean` is None).

        Returns (images, one-hot labels, the indices of the readable ones).
        """
        width, height = self.scale_size
        decoded = self._thread_pool().map(self._load, indices)
        kept = [(i, image) for i, image in enumerate(decoded)
                if image is not None]
        dtype = np.uint8 if self.mean is None else np.float32
        images = np.empty((len(kept), height, width, 3), dtype)
        for row, (i, image) in enumerate(kept):
            y, x = offsets[i]
            crop = image[y:y + height, x:x + width]
            images[row] = crop[:, ::-1] if flips[i] else crop
        if self.mean is not None:
            images -= self.mean
        kept_indices = np.asarray([indices[i] for i, _ in kept], dtype=int)
        return images, self.one_hot(kept_indices), kept_indices

    def _load(self, index):
        """The resized image of list entry `index`, or None if it is skipped.

        From the image cache when it holds it; decoded (and cached) if not.
        """
        if index in self.skipped:
            return None
        image = self.cache.get(index) if self.cache is not None else None
        if image is not None:
            return image
        try:
            image = load_image(self.images[index], self.loader,
                               self.resize_size, self.reduce)
        except ImageError as error:
            message = '%s (%s, line %d)' % (error, self.class_list,
                                            self.lines[index])
            if self.strict:
                raise ImageError(message)
            self.skipped[index] = message
            print('Warning: skipping %s' % message, file=sys.stderr)
            return None
        if self.cache is not None:
            self.cache.put(index, image)
        return image

    def _thread_pool(self):
        if getattr(self, '_pool', None) is None:
            self._pool = ThreadPoolExecutor(self.workers)
        return self._pool


def prefetched(batches, depth=2):
    """Iterate over `batches` while a background thread makes the next ones.

    While TensorFlow computes a step (outside Python's lock) the thread
    decodes the following batch, so the step rarely waits for data.

    - Memory stays bounded: at most `depth` finished batches wait in the
      queue, plus the one the thread is making.
    - An error in the thread (a strict generator's unreadable image, with the
      file's name) is raised here, in the training loop, instead of leaving
      it waiting for a batch that never comes.
    - Leaving the loop early (break, an exception in the step) stops the
      thread and waits for it, so no thread keeps decoding for nobody.
    """
    slots = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def offer(item):
        """Queue `item` unless the consumer has gone; True if queued."""
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)  # timeout: look at `stop` again
                return True
            except queue.Full:
                pass
        return False

    def produce():
        try:
            for batch in batches:
                if not offer(batch):
                    return
            offer(done)
        except BaseException as error:  # forwarded to the consumer
            offer(error)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
