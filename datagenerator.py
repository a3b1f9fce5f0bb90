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

and returns float32 BGR images minus the ImageNet mean, with one-hot labels.
Two decoders are offered, OpenCV (`loader='opencv'`) and Pillow
(`loader='pil'`); both give the same arrays to within a JPEG rounding.
"""
import math
import os
import queue
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: The ImageNet mean that Caffe subtracted, in BGR order.
IMAGENET_MEAN_BGR = np.array([104.007, 116.669, 122.679], dtype=np.float32)

LOADERS = ('opencv', 'pil')

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
        raise ListFileError(
            '%s has %d bad line(s):\n%s\nEach line must be "<path> <label>" '
            'with an integer label from 0 to num_classes-1.'
            % (list_file, len(problems), '\n'.join(problems)))
    if not paths:
        raise ListFileError('%s lists no images' % list_file)
    return paths, labels, lines


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


def load_image(path, loader='opencv', size=(256, 256)):
    """Decode an image file to a uint8 BGR array of `size` (width, height).

    Any mode (grayscale, RGBA, palette, CMYK, 16-bit) comes out as 3
    channels. Downscaling averages over the source pixels (OpenCV's
    INTER_AREA, Pillow's antialiased BILINEAR), which the two libraries
    compute almost identically; plain bilinear sampling would alias.
    """
    if loader == 'opencv':
        return _load_opencv(path, size)
    if loader == 'pil':
        return _load_pil(path, size)
    raise ValueError('loader must be one of %s, not %r' % (LOADERS, loader))


def _load_opencv(path, size):
    import cv2
    try:
        # np.fromfile + imdecode instead of imread: works for any file name,
        # and a missing file raises instead of returning None.
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise ImageError('cannot read image %s: %s' % (path, error))
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
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


def _load_pil(path, size):
    from PIL import Image, ImageOps
    try:
        with Image.open(path) as image:
            _check_size(path, *image.size)
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
    if min(width, height) < MIN_SIDE:
        raise ImageError('image %s is only %dx%d pixels, too small to train '
                         'on (at least %d per side)' % (path, width, height,
                                                        MIN_SIDE))


class ImageDataGenerator(object):
    """Batches of images and one-hot labels from a list file.

    The interface of the original OpenCV-era generator:

        gen = ImageDataGenerator('trainfile.txt', horizontal_flip=True,
                                 shuffle=True, nb_classes=102)
        for step in range(math.ceil(gen.data_size / 128)):
            images, labels = gen.next_batch(128)   # last batch may be smaller
        gen.reset_pointer()                        # next epoch, reshuffled

    or simply `for images, labels in gen.batches(128): ...` for one epoch.

    Args:
        class_list: the list file.
        horizontal_flip: mirror each image with probability 1/2.
        shuffle: visit the images in a new random order each epoch.
        mean: per-channel BGR mean to subtract.
        scale_size: (width, height) of the crop fed to the net, 227x227.
        nb_classes: length of the one-hot label vectors.
        loader: 'opencv' or 'pil', the library that decodes and resizes.
        random_crop: random crops (training) instead of the centre crop;
            defaults to `horizontal_flip`, i.e. training-time augmentation.
        resize_size: (width, height) every image is first resized to.
        replacementpath: folder that replaces each listed path's folder.
        seed: makes the order, crops and flips reproducible. The draws of
            epoch e depend only on (seed, e), not on the batch size or on how
            many threads decode.
        workers: threads decoding images in parallel (OpenCV and Pillow
            release Python's lock while decoding).
        strict: stop at the first unreadable image (an ImageError naming it
            and its list line). By default such an image is skipped with one
            warning, left out of its batch (never replaced by a placeholder),
            and counted in `skipped`.
    """

    def __init__(self, class_list, horizontal_flip=False, shuffle=False,
                 mean=IMAGENET_MEAN_BGR, scale_size=(227, 227), nb_classes=2,
                 loader='opencv', random_crop=None, resize_size=(256, 256),
                 replacementpath='', seed=None, workers=None, strict=False):
        if loader not in LOADERS:
            raise ValueError('loader must be one of %s, not %r'
                             % (LOADERS, loader))
        self.horizontal_flip = horizontal_flip
        self.shuffle = shuffle
        self.mean = np.asarray(mean, dtype=np.float32)
        self.scale_size = tuple(scale_size)
        self.resize_size = tuple(resize_size)
        self.n_classes = nb_classes
        self.loader = loader
        self.random_crop = horizontal_flip if random_crop is None else random_crop
        self.seed = (np.random.SeedSequence().entropy if seed is None
                     else seed)
        self.workers = workers or min(8, os.cpu_count() or 1)
        self.strict = strict
        self.skipped = {}  # list index -> why the image is skipped
        self.class_list = class_list
        self.images, self.labels, self.lines = read_list(
            class_list, replacementpath, nb_classes)
        self.data_size = len(self.labels)
        self.epoch = -1
        self.reset_pointer()

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

        Returns (images [n, 227, 227, 3] float32, labels [n, nb_classes]);
        n is smaller than batch_size for the last batch, 0 past the end.
        """
        positions = range(self.pointer,
                          min(self.pointer + batch_size, self.data_size))
        self.pointer = positions.stop
        return self._make_batch(positions)

    def batches(self, batch_size, prefetch=0):
        """Iterate over the rest of this epoch in batches.

        With `prefetch` > 0 a background thread makes the next batches while
        the caller works on the current one (see `prefetched`).
        """
        def epoch():
            while self.pointer < self.data_size:
                yield self.next_batch(batch_size)
        return prefetched(epoch(), prefetch) if prefetch else epoch()

    def steps_per_epoch(self, batch_size):
        return int(math.ceil(self.data_size / float(batch_size)))

    def _make_batch(self, positions):
        width, height = self.scale_size
        pool = self._thread_pool()
        decoded = pool.map(self._load, [self.order[p] for p in positions])
        kept = [(p, image) for p, image in zip(positions, decoded)
                if image is not None]
        images = np.empty((len(kept), height, width, 3), np.float32)
        labels = np.zeros((len(kept), self.n_classes), np.float32)
        for i, (position, image) in enumerate(kept):
            y, x = self.offsets[position]
            crop = image[y:y + height, x:x + width]
            if self.flips[position]:
                crop = crop[:, ::-1]
            images[i] = crop
            labels[i, self.labels[self.order[position]]] = 1
        images -= self.mean
        return images, labels

    def _load(self, index):
        """The resized image of list entry `index`, or None if it is skipped."""
        if index in self.skipped:
            return None
        try:
            return load_image(self.images[index], self.loader,
                              self.resize_size)
        except ImageError as error:
            message = '%s (%s, line %d)' % (error, self.class_list,
                                            self.lines[index])
            if self.strict:
                raise ImageError(message)
            self.skipped[index] = message
            print('Warning: skipping %s' % message, file=sys.stderr)
            return None

    def _thread_pool(self):
        if getattr(self, '_pool', None) is None:
            self._pool = ThreadPoolExecutor(self.workers)
        return self._pool


def prefetched(batches, depth=2):
    """Iterate over `batches` while a background thread makes the next ones.

    While TensorFlow computes a step (outside Python's lock) the thread
    decodes the following batch, so the step rarely waits for data. At most
    `depth` batches wait in the queue, which bounds memory. An error in the
    thread (an unreadable image) is raised here, in the training loop.
    """
    slots = queue.Queue(maxsize=depth)
    done = object()

    def produce():
        try:
            for batch in batches:
                slots.put(batch)
            slots.put(done)
        except BaseException as error:  # forwarded to the consumer
            slots.put(error)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    while True:
        item = slots.get()
        if item is done:
            return
        if isinstance(item, BaseException):
            raise item
        yield item
