"""The benchmark's images, and how fast the loaders turn them into arrays.

Part of benchmarks/bench.py (run that). Two concerns, both without
TensorFlow:

- the images: the first images of trainfile.txt from the real Oxford 102
  folder (`../shared/data/oxford102` or $FLOWERS_DIR), or generated JPEGs
  of the same size when it is absent; and copies enlarged 2x;
- the loaders: images/s of `load_image` on one thread, reduced against full
  decoding, for OpenCV and Pillow; what the reduction costs in quality (the
  mean absolute difference of the final arrays, 0..255); batches from the
  image cache against decoding them.
"""
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run from anywhere: the kit's modules are there
    sys.path.insert(0, ROOT)

from bench_weights import best_times  # noqa: E402
from datagenerator import ImageDataGenerator  # noqa: E402
from imagefiles import load_image, reduction  # noqa: E402

#: Classes of the training list (Oxford 102).
NUM_CLASSES = 102

# ---------------------------------------------------------------------------
# The images
# ---------------------------------------------------------------------------


def flowers_dir():
    """$FLOWERS_DIR, or ../shared/data/oxford102 beside the project (as the
    tests look for it)."""
    return os.environ.get('FLOWERS_DIR') or os.path.join(
        os.path.dirname(ROOT), 'shared', 'data', 'oxford102')


def training_list(folder, count):
    """(list file, description): the first `count` images of trainfile.txt
    from the real image folder, or `count` generated 500x667 JPEGs."""
    jpg = os.path.join(flowers_dir(), 'jpg')
    with open(os.path.join(ROOT, 'trainfile.txt')) as f:
        lines = [line.split() for line in f if line.strip()]
    if os.path.isdir(jpg):
        # Every 1020/count-th line: all classes, whatever the count.
        chosen = lines[::max(1, len(lines) // count)][:count]
        entries = [(os.path.join(jpg, os.path.basename(path)), label)
                   for path, label in chosen]
        what = 'real Oxford 102 photos (%d of trainfile.txt, %s)' % (
            len(entries), jpg)
    else:
        entries = generated_jpegs(os.path.join(folder, 'generated'), count)
        what = ('GENERATED 500x667 JPEGs (%d; no real images in %s)'
                % (len(entries), jpg))
    list_file = os.path.join(folder, 'train.txt')
    with open(list_file, 'w') as f:
        f.writelines('%s %s\n' % entry for entry in entries)
    return list_file, what


def generated_jpegs(folder, count, size=(500, 667)):
    """`count` JPEGs of `size` (height, width), the shape of an Oxford
    photo; [(path, label)]. Each is a smooth random colour field with
    sensor-like noise, so that it compresses and decodes like a photo
    rather than like a flat picture."""
    import cv2
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    height, width = size
    entries = []
    for i in range(count):
        coarse = rng.integers(0, 256, (6, 8, 3)).astype(np.uint8)
        field = cv2.resize(coarse, (width, height),
                           interpolation=cv2.INTER_CUBIC)
        noisy = field + rng.normal(0, 8, field.shape)
        path = os.path.join(folder, 'image_%05d.jpg' % i)
        cv2.imwrite(path, np.clip(noisy, 0, 255).astype(np.uint8))
        entries.append((path, i % NUM_CLASSES))
    return entries


def enlarged_copies(paths, folder):
    """JPEGs twice the size of `paths` (1000x1334 for Oxford, which decode
    at 1/4); written at quality 90."""
    import cv2
    os.makedirs(folder, exist_ok=True)
    copies = []
    for i, path in enumerate(paths):
        image = cv2.imread(path)
        copy = os.path.join(folder, 'large_%05d.jpg' % i)
        cv2.imwrite(copy, cv2.resize(image, None, fx=2, fy=2,
                                     interpolation=cv2.INTER_CUBIC),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        copies.append(copy)
    return copies


def list_paths(list_file):
    with open(list_file) as f:
        return [line.rsplit(None, 1)[0] for line in f if line.strip()]


# ---------------------------------------------------------------------------
# The loaders
# ---------------------------------------------------------------------------


def loader_speeds(paths, loader, variants, repeats=2):
    """{variant: images per second of load_image on one thread} for the
    `reduce` settings in `variants` {name: reduce}. The best of `repeats`
    rounds, the variants taking turns, so that the disk cache and the CPU's
    clock speed treat them alike."""
    for path in paths:  # read the files once, so no variant pays the disk
        with open(path, 'rb') as f:
            f.read()

    def loading(reduce):
        return lambda: [load_image(path, loader, reduce=reduce)
                        for path in paths]
    best = best_times({name: loading(reduce)
                       for name, reduce in variants.items()}, repeats)
    return {name: len(paths) / seconds for name, seconds in best.items()}


def decoding_difference(paths, loader, reduce):
    """(mean absolute difference of the final arrays, reduced against full,
    0..255; how many of the images the reduction applies to)."""
    from PIL import Image
    differences, reduced = [], 0
    for path in paths:
        with Image.open(path) as image:
            reduced += reduction(*image.size, (256, 256), reduce) > 1
        a = load_image(path, loader, reduce=reduce).astype(np.float32)
        b = load_image(path, loader, reduce=False).astype(np.float32)
        differences.append(np.abs(a - b).mean())
    return float(np.mean(differences)), int(reduced)


def generator_speed(list_file, cache):
    """Images/s of batches of 64 (crop, mirror; uint8, as training gets
    them) from a training generator with the default workers: the first
    epoch decodes, the second comes from the image cache when there is one.
    Returns both."""
    data = ImageDataGenerator(list_file, horizontal_flip=True, shuffle=True,
                              num_classes=NUM_CLASSES, seed=1, cache=cache,
                              mean=None)
    speeds = []
    for _ in range(2):
        start = time.perf_counter()
        for _ in data.batches(64):
            pass
        speeds.append(data.data_size / (time.perf_counter() - start))
        data.reset_pointer()
    return speeds


def measure_loaders(list_file, folder, list_count, large_count):
    """The loader figures: speed and quality cost of reduced decoding on
    `list_count` images of the list ('list') and on `large_count` copies
    enlarged 2x ('large'); batches from the image cache."""
    figures = {}
    listed = list_paths(list_file)[:list_count]
    large = enlarged_copies(listed[:large_count], os.path.join(folder, 'large'))
    for loader in ('opencv', 'pil'):
        for name, paths in (('list', listed), ('large', large)):
            speeds = loader_speeds(paths, loader, dict(full=False,
                                                       reduced=True))
            key = 'loader.%s.%s.' % (name, loader)
            for variant, speed in speeds.items():
                figures[key + variant + '_img_per_s'] = speed
                if variant != 'full':
                    figures[key + variant + '_speedup'] = speed / speeds['full']
            mad, count = decoding_difference(paths, loader, reduce=True)
            figures['quality.%s.%s.mad' % (name, loader)] = mad
            figures['quality.%s.%s.reduced_images' % (name, loader)] = count
            figures['quality.%s.%s.images' % (name, loader)] = len(paths)
    decoding, cached = generator_speed(list_file, cache='memory')
    figures['loader.generator.decoding_img_per_s'] = decoding
    figures['loader.generator.cached_img_per_s'] = cached
    figures['loader.generator.cache_speedup'] = cached / decoding
    return figures
