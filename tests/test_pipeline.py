"""The input pipeline: prefetching, reduced-size decoding, the image cache."""
import glob
import os
import threading
import time

import cv2
import numpy as np
import pytest
from PIL.JpegImagePlugin import JpegImageFile

import datagenerator
from datagenerator import (ImageDataGenerator, ImageError, default_workers,
                           prefetched)
from imagecache import cache_mode
from imagefiles import load_image, reduction
from test_datagenerator import make_images, write


@pytest.fixture
def image_list(tmp_path):
    names = make_images(tmp_path, 10)
    return write(tmp_path / 'list.txt', ''.join(
        '%s %d\n' % (name, i % 3) for i, name in enumerate(names)))


def smooth_photo(path, width, height, seed=0):
    """A JPEG with photo-like smooth content (random noise would make every
    scale look equally bad); returns the path."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 40, width // 40, 3), dtype=np.uint8)
    cv2.imwrite(str(path), cv2.resize(small, (width, height),
                                      interpolation=cv2.INTER_CUBIC),
                [cv2.IMWRITE_JPEG_QUALITY, 92])
    return str(path)


# ---- workers and prefetching -----------------------------------------------

def test_default_workers_follow_the_cores():
    workers = default_workers()
    assert 1 <= workers <= min(8, os.cpu_count())


def test_workers_must_be_positive(image_list):
    with pytest.raises(ValueError, match='workers'):
        ImageDataGenerator(image_list, num_classes=3, workers=0)


def epoch_images(image_list, workers, prefetch, cache, epochs=2):
    """Every batch of `epochs` seeded training epochs, concatenated."""
    generator = ImageDataGenerator(image_list, horizontal_flip=True,
                                   shuffle=True, num_classes=3, seed=11,
                                   workers=workers, cache=cache)
    result = []
    for _ in range(epochs):
        batches = list(generator.batches(4, prefetch=prefetch))
        result.append((np.concatenate([b[0] for b in batches]),
                       np.concatenate([b[1] for b in batches])))
        generator.reset_pointer()
    return result


@pytest.mark.parametrize('workers, prefetch, cache', [
    (3, 0, None), (1, 2, None), (3, 2, None), (1, 0, 'memory'),
    (3, 2, 'memory'), (2, 1, 'disk')])
def test_same_seed_same_batches_whatever_workers_prefetch_and_cache(
        image_list, workers, prefetch, cache):
    reference = epoch_images(image_list, workers=1, prefetch=0, cache=None)
    result = epoch_images(image_list, workers, prefetch, cache)
    for (images, labels), (expected, expected_labels) in zip(result, reference):
        np.testing.assert_array_equal(images, expected)
        np.testing.assert_array_equal(labels, expected_labels)


def test_an_unreadable_image_in_strict_mode_reaches_the_loop_by_name(tmp_path):
    names = make_images(tmp_path, 6)
    (tmp_path / 'broken.jpg').write_bytes(b'\xff\xd8 not a JPEG')
    lines = ['%s 0\n' % name for name in names]
    lines.insert(4, 'broken.jpg 1\n')  # in the second batch of 2
    generator = ImageDataGenerator(write(tmp_path / 'list.txt', ''.join(lines)),
                                   num_classes=2, strict=True, workers=2)
    outcome = {}

    def consume():
        try:
            for _ in generator.batches(2, prefetch=2):
                outcome['batches'] = outcome.get('batches', 0) + 1
        except ImageError as error:
            outcome['error'] = str(error)

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    consumer.join(timeout=30)
    assert not consumer.is_alive(), 'the training loop hangs'
    assert 'broken.jpg' in outcome['error'] and 'line 5' in outcome['error']
    assert outcome['batches'] == 2  # the batches before the bad one arrived


def counting(items, produced):
    """Yield `items`, counting each one made in produced[0]."""
    for item in items:
        produced[0] += 1
        yield item


def test_prefetching_keeps_at_most_depth_batches_waiting():
    produced, depth = [0], 2
    batches = prefetched(counting(range(20), produced), depth)
    for consumed, _ in enumerate(batches, start=1):
        time.sleep(0.02)  # a slow training step: the producer runs ahead
        # depth in the queue, plus the one the producer holds while blocked
        assert produced[0] <= consumed + depth + 1
    assert produced[0] == 20


def test_leaving_the_loop_early_stops_the_background_thread():
    produced = [0]
    threads = threading.active_count()
    batches = prefetched(counting(range(1000), produced), 2)
    for i, _ in enumerate(batches):
        if i == 3:
            break
    batches.close()  # what leaving a for loop over it does, when collected
    assert threading.active_count() == threads
    made = produced[0]
    time.sleep(0.3)
    assert produced[0] == made <= 4 + 2 + 1


def test_prefetch_forwards_any_error_of_the_source():
    def failing():
        yield 1
        raise RuntimeError('disk gone')
    with pytest.raises(RuntimeError, match='disk gone'):
        list(prefetched(failing()))


# ---- reduced-size decoding -------------------------------------------------

@pytest.mark.parametrize('width, height, reduce, factor', [
    (500, 667, True, 2),     # Oxford's photos: 250 >= 0.97 * 256
    (490, 667, True, 1),     # 245 would be enlarged by more than 3%
    (500, 667, 1.0, 1),      # never enlarge: 250 does not cover 256
    (512, 700, 1.0, 2),
    (1000, 1334, True, 4),   # 250 again
    (1000, 1334, 1.0, 2),
    (1024, 1500, True, 4),
    (4000, 3000, True, 8),   # a phone photo
    (4000, 3000, False, 1),
    (300, 200, True, 1)])
def test_reduction_keeps_both_sides_covering_the_target(width, height, reduce,
                                                        factor):
    assert reduction(width, height, (256, 256), reduce) == factor


@pytest.fixture
def decoding_spies(monkeypatch):
    """Record the imdecode flags and the draft sizes the loaders ask for."""
    calls = {'flags': [], 'drafts': []}
    imdecode, draft = cv2.imdecode, JpegImageFile.draft

    def spy_imdecode(data, flags):
        calls['flags'].append(flags)
        return imdecode(data, flags)

    def spy_draft(self, mode, size):
        calls['drafts'].append(size)
        return draft(self, mode, size)
    monkeypatch.setattr(cv2, 'imdecode', spy_imdecode)
    monkeypatch.setattr(JpegImageFile, 'draft', spy_draft)
    return calls


@pytest.mark.parametrize('loader', ['opencv', 'pil'])
def test_large_jpegs_decode_reduced_and_stay_close(tmp_path, loader,
                                                   decoding_spies):
    path = smooth_photo(tmp_path / 'big.jpg', 1100, 1300)
    reduced = load_image(path, loader).astype(np.float64)
    full = load_image(path, loader, reduce=False).astype(np.float64)
    assert reduced.shape == full.shape == (256, 256, 3)
    assert np.abs(reduced - full).mean() < 3.0
    if loader == 'opencv':
        assert decoding_spies['flags'] == [cv2.IMREAD_REDUCED_COLOR_4,
                                           cv2.IMREAD_COLOR]
    else:
        assert decoding_spies['drafts'] == [(275, 325)]


@pytest.mark.parametrize('loader', ['opencv', 'pil'])
def test_small_jpegs_and_other_formats_decode_whole(tmp_path, loader,
                                                    decoding_spies):
    # 240 pixels at half size would be enlarged by more than 3%.
    load_image(smooth_photo(tmp_path / 'small.jpg', 480, 640), loader)
    png = str(tmp_path / 'big.png')
    cv2.imwrite(png, cv2.imread(smooth_photo(tmp_path / 'b.jpg', 1100, 1300)))
    load_image(png, loader)
    if loader == 'opencv':
        assert decoding_spies['flags'] == [cv2.IMREAD_COLOR] * 2
    else:
        assert decoding_spies['drafts'] == []


def mean_difference_to_full_decoding(paths, loader):
    differences = []
    for path in paths:
        reduced = load_image(path, loader).astype(np.float64)
        full = load_image(path, loader, reduce=False).astype(np.float64)
        differences.append(np.abs(reduced - full).mean())
    return np.mean(differences)


def test_real_photos_decode_at_half_size_by_default(flowers, decoding_spies):
    """Oxford's photos (shorter side 500) decode at 250 pixels, then the
    final resize enlarges them slightly: the cost stays under 3.0."""
    files = sorted(glob.glob(os.path.join(flowers, 'jpg', '*.jpg')))[::200]
    for loader in ('opencv', 'pil'):
        difference = mean_difference_to_full_decoding(files, loader)
        assert difference < 3.0, (loader, difference)
    reduced_flags = decoding_spies['flags'][::2]  # reduced, then full
    assert reduced_flags == [cv2.IMREAD_REDUCED_COLOR_2] * len(files)
    # Pillow's 1/8 drafts (about 62x83) are the OpenCV loader's check of
    # the compressed data (jpegscan.py); the Pillow loader's own are 1/2.
    halves = [size for size in decoding_spies['drafts'] if min(size) >= 200]
    assert len(halves) == len(files)


def test_reduced_decoding_of_real_photos_enlarged_2x(flowers, tmp_path):
    """Real content at 1000x1334 decodes at 1/4: the cost stays small."""
    files = sorted(glob.glob(os.path.join(flowers, 'jpg', '*.jpg')))[::200]
    big = []
    for i, source in enumerate(files):
        big.append(str(tmp_path / ('%d.jpg' % i)))
        cv2.imwrite(big[-1], cv2.resize(cv2.imread(source), None, fx=2, fy=2,
                                        interpolation=cv2.INTER_CUBIC),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
    for loader in ('opencv', 'pil'):
        difference = mean_difference_to_full_decoding(big, loader)
        assert difference < 3.0, (loader, difference)


# ---- the image cache -------------------------------------------------------

def test_cache_mode_follows_the_budget():
    assert cache_mode('auto', 10, budget=10) == 'memory'
    assert cache_mode('auto', 11, budget=10) == 'disk'
    assert cache_mode('disk', 1) == 'disk'
    assert cache_mode(None, 1) is None and cache_mode('off', 1) is None
    with pytest.raises(ValueError, match='auto'):
        cache_mode('ram', 1)


def count_decodes(monkeypatch):
    """Count the calls of load_image made by the generators."""
    calls = []

    def counted(path, *args):
        calls.append(path)
        return load_image(path, *args)
    monkeypatch.setattr(datagenerator, 'load_image', counted)
    return calls


@pytest.mark.parametrize('cache', ['memory', 'disk'])
def test_cached_epochs_decode_nothing_but_crop_anew(image_list, cache,
                                                    monkeypatch):
    decodes = count_decodes(monkeypatch)
    generator = ImageDataGenerator(image_list, horizontal_flip=True,
                                   shuffle=True, num_classes=3, seed=3,
                                   cache=cache)
    first = np.concatenate([b[0] for b in generator.batches(4, prefetch=2)])
    generator.reset_pointer()
    second = np.concatenate([b[0] for b in generator.batches(4, prefetch=2)])
    assert len(decodes) == 10  # the first epoch only
    assert generator.cache.filled.all() and generator.cache.mode == cache
    assert not np.array_equal(first, second)  # new order, crops and flips
    if cache == 'disk':
        assert isinstance(generator.cache.pixels, np.memmap)


def test_no_cache_decodes_every_epoch(image_list, monkeypatch):
    decodes = count_decodes(monkeypatch)
    generator = ImageDataGenerator(image_list, num_classes=3, cache=None)
    for _ in range(2):
        list(generator.batches(4))
        generator.reset_pointer()
    assert len(decodes) == 20 and generator.cache is None


def test_auto_cache_goes_to_disk_over_the_budget(image_list):
    small = ImageDataGenerator(image_list, num_classes=3)
    assert small.cache.mode == 'memory'
    assert 'in memory' in small.cache_description()
    assert '2 MB' in small.cache_description()  # 10 x 196,608 bytes
    tight = ImageDataGenerator(image_list, num_classes=3,
                               cache_budget=1000000)
    assert tight.cache.mode == 'disk'
    assert 'memory-mapped' in tight.cache_description()
    off = ImageDataGenerator(image_list, num_classes=3, cache=None)
    assert 'off' in off.cache_description()


def test_unreadable_images_are_not_cached_nor_warned_twice(tmp_path, capsys):
    names = make_images(tmp_path, 3)
    path = write(tmp_path / 'list.txt', ''.join(
        ['%s 0\n' % name for name in names] + ['missing.jpg 1\n']))
    generator = ImageDataGenerator(path, num_classes=2, cache='memory')
    assert len(generator.next_batch(4)[0]) == 3
    generator.reset_pointer()
    assert len(generator.next_batch(4)[0]) == 3
    assert capsys.readouterr().err.count('Warning: skipping') == 1
    assert list(generator.cache.filled) == [True, True, True, False]


def test_cache_modes_agree_on_the_real_images(flowers, tmp_path):
    """The cache modes give the real photos back exactly, epoch after epoch."""
    files = sorted(glob.glob(os.path.join(flowers, 'jpg', '*.jpg')))[:24]
    image_list = write(tmp_path / 'real.txt', ''.join(
        '%s %d\n' % (path, i % 3) for i, path in enumerate(files)))
    reference = epoch_images(image_list, workers=2, prefetch=2, cache=None)
    for cache in ('memory', 'disk'):
        result = epoch_images(image_list, workers=2, prefetch=2, cache=cache)
        for (images, _), (expected, _) in zip(result, reference):
            np.testing.assert_array_equal(images, expected)
