"""The image cache: each image decoded and resized once, then kept.

Decoding a JPEG costs far more than cropping and mirroring it, and the same
images come back every epoch. So the generator keeps each image, once
resized to 256x256, as uint8 (`ImageCache`), and the epochs after the first
decode no JPEG at all; the crops and mirrors are still drawn anew.
`cache_mode` decides where: in memory, or in a memory-mapped temporary file
when the images would take more than CACHE_BUDGET.
"""
import tempfile

import numpy as np

#: How much memory an `ImageCache` may take before it moves to a file on
#: disk: 2 GB, about 10,000 images of 256x256 (196,608 bytes each). The
#: 1,020 training images of Oxford 102 take 200 MB.
CACHE_BUDGET = 2 * 10**9


class ImageCache(object):
    """Every image of a list decoded and resized once, kept as uint8.

    One slot per list entry in `pixels` [count, height, width, 3]; `filled`
    says which slots hold their image. A 256x256 image takes 196,608 bytes,
    so the 1,020 Oxford training images take 200 MB, against 43 MB of JPEG
    files that cost milliseconds each to decode again.

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
