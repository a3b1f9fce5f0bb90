"""Image lists in, batches for AlexNet out: the generator of the course.

`ImageDataGenerator` reads a list file (imagelists.py: one `<path> <label>`
per line) and turns it into batches the way Caffe prepared the images that
bvlc_alexnet was trained on:

    training:   resize to 256x256, random 227x227 crop, random mirror
    evaluation: resize to 256x256, centre 227x227 crop

and returns float32 BGR images minus the ImageNet mean, with one-hot labels
(or, with `mean=None`, uint8 images whose mean the graph subtracts).
Two decoders are offered, OpenCV (`loader='opencv'`) and Pillow
(`loader='pil'`), in imagefiles.py; both give the same arrays to within a
JPEG rounding, and refuse the same damaged files.

So that training never waits for data:

* worker threads decode the images of a batch in parallel, and a background
  thread prepares the next batches while the current step runs
  (`batches(..., prefetch=2)`, `prefetched` in prefetch.py);
* each image, once resized to 256x256, is kept as uint8 (imagecache.py),
  so the epochs after the first decode no JPEG at all.
"""
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

try:
    import cv2  # for mirror(): its flip is 20x numpy's
except ImportError:  # a Pillow-only install mirrors with numpy
    cv2 = None

from imagecache import CACHE_BUDGET, CACHE_MODES, ImageCache, cache_mode
from imagefiles import LOADERS, ImageError, load_image
from imagelists import ListFileError, missing_images, read_list
from prefetch import prefetched

#: What a training script needs from here; the rest of the input pipeline
#: lives in imagelists.py (lists), imagefiles.py (decoding) and
#: imagecache.py (the image cache).
__all__ = ['ImageDataGenerator', 'read_list', 'missing_images',
           'IMAGENET_MEAN_BGR', 'ImageError', 'ListFileError', 'check_dtype',
           'CACHE_MODES', 'LOADERS', 'prefetched']

#: The ImageNet mean that Caffe subtracted, in BGR order.
IMAGENET_MEAN_BGR = np.array([104.007, 116.669, 122.679], dtype=np.float32)


def check_dtype(images, tensor, class_list):
    """Refuse to feed a batch into a tensor of another dtype. TensorFlow
    would convert it silently: float32 images minus the mean would wrap
    around into uint8, uint8 pixels fed as float32 would miss the mean."""
    expected = np.dtype(tensor.dtype.as_numpy_dtype)
    if images.dtype != expected:
        raise TypeError(
            'the batches of %s are %s, but %s takes %s. Make the generator '
            'with mean=None for uint8 pixels (as finetune.py does), or with '
            'the default mean for float32 images minus the mean.'
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


class ImageDataGenerator(object):
    """Batches of images and one-hot labels from a list file.

    The interface of the original OpenCV-era generator:

        gen = ImageDataGenerator('trainfile.txt', horizontal_flip=True,
                                 shuffle=True, num_classes=102)
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
            that subtracts the mean itself (finetune.py's graph does): a
            quarter of the bytes to queue, and to copy to a GPU each step.
        scale_size: (width, height) of the crop fed to the net, 227x227.
        num_classes: length of the one-hot label vectors; a label of the
            list must be below it.
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
            and its list line). By default such an image (damaged, or
            deleted since the run started) is skipped with one warning, left
            out of its batch (never replaced by a placeholder), and counted
            in `skipped`.
        reduce: decode large JPEGs at a reduced scale (see
            imagefiles.load_image).
        cache: keep the resized images between epochs (imagecache.py):
            'auto' (in memory if they fit `cache_budget` bytes, 2 GB, else
            in a memory-mapped file in `cache_dir`), 'memory', 'disk', or
            None. The budget is per generator: training and validation
            lists of Oxford 102 take 200 MB each.
            `cache_description()` says which; crops and mirrors are still
            drawn anew each epoch.
    """

    def __init__(self, class_list, horizontal_flip=False, shuffle=False,
                 mean=IMAGENET_MEAN_BGR, scale_size=(227, 227), num_classes=2,
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
        self.num_classes = num_classes
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
            class_list, replacementpath, num_classes)
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

    def reset_pointer(self, epoch=None, position=0):
        """Start the next epoch, or epoch number `epoch` (counted from 0).

        The epoch's order, crops and mirrors depend on (seed, epoch) only,
        so a run that stopped inside an epoch continues it exactly: pass
        the epoch and the `position` in it where the next batch starts,
        the number of images of the epoch already done (steps done times
        the batch size). `pointer` then starts there.
        """
        if not 0 <= position <= self.data_size:
            raise ValueError('position %r is outside the epoch of %s (0..%d '
                             'images)' % (position, self.class_list,
                                          self.data_size))
        self.epoch = self.epoch + 1 if epoch is None else epoch
        self.pointer = int(position)
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

        Returns (images [n, 227, 227, 3], labels [n, num_classes]); the
        images are float32 minus the mean, or uint8 if `mean` is None. n is
        smaller than batch_size for the last batch, 0 past the end.
        """
        batch = self._advance(batch_size)
        images, labels, _ = self._make_batch(
            self.order[batch], self.offsets[batch], self.flips[batch])
        return images, labels

    def index_batches(self, batch_size):
        """The list indices of the rest of this epoch's batches, without
        decoding anything: the entries `batches(batch_size)` would give,
        cut at the same places. Advances `pointer` like it; what a source
        of other data per image (featurecache.py) needs."""
        while self.pointer < self.data_size:
            yield self.order[self._advance(batch_size)]

    def _advance(self, batch_size):
        """The positions of the next batch in this epoch (a slice), moving
        `pointer` past them."""
        if batch_size < 1:
            raise ValueError('batch_size must be at least 1, not %r'
                             % (batch_size,))
        batch = slice(self.pointer, min(self.pointer + batch_size,
                                        self.data_size))
        self.pointer = batch.stop
        return batch

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
        labels = np.zeros((len(indices), self.num_classes), np.float32)
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
            if flips[i]:
                mirror(crop, images[row])
            else:
                images[row] = crop
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
                raise ImageError(message, error.kind)
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


def mirror(image, out):
    """out[...] = image[:, ::-1], the image mirrored left to right.

    Through OpenCV where it can write into `out` (same dtype): numpy copies
    a reversed axis of 3-byte pixels byte by byte, 0.5 ms for a 227x227
    crop, which capped the batches from the image cache at about 3,000
    images/s; cv2.flip takes 22 us (README, Measured).
    """
    if cv2 is not None and out.dtype == image.dtype:
        cv2.flip(image, 1, dst=out)
    else:
        out[...] = image[:, ::-1]
