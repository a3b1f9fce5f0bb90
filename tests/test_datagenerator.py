"""Lists, both image loaders, batching and augmentation."""
import glob
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from datagenerator import (IMAGENET_MEAN_BGR, ImageDataGenerator, ImageError,
                           ListFileError, read_list)
from imagefiles import load_image


def write(path, text):
    with open(path, 'w') as f:
        f.write(text)
    return str(path)


def make_images(folder, count, size=(300, 260)):
    """Distinct random RGB JPEGs; returns their file names."""
    rng = np.random.default_rng(0)
    names = []
    for i in range(count):
        name = 'img %d.jpg' % i  # a space, as user paths have
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        cv2.imwrite(os.path.join(str(folder), name), pixels)
        names.append(name)
    return names


# ---- lists -----------------------------------------------------------------

def test_list_parsing_spaces_comments_and_list_relative_paths(tmp_path):
    sub = tmp_path / 'lists'
    sub.mkdir()
    path = write(sub / 'list.txt', '# a comment\n\nmy photos/rose 2.jpg 3\n'
                 '  /abs/tulip.jpg 0  \n')
    paths, labels, lines = read_list(path)
    assert paths == [os.path.join(str(sub), 'my photos/rose 2.jpg'),
                     '/abs/tulip.jpg']
    assert labels == [3, 0]
    assert lines == [3, 4]


def test_replacementpath_keeps_the_file_name(tmp_path):
    path = write(tmp_path / 'list.txt', '/old/place/jpg/image_00001.jpg 1\n'
                 'C:\\data\\jpg\\image_00002.jpg 2\njpg/image 3.jpg 0\n')
    paths, _, _ = read_list(path, replacementpath='/new')
    assert paths == ['/new/image_00001.jpg', '/new/image_00002.jpg',
                     '/new/image 3.jpg']


def test_every_bad_line_is_reported_at_once(tmp_path):
    path = write(tmp_path / 'bad.txt', 'a.jpg 1\nnolabel\nb.jpg x\n'
                 'c.jpg 7\na.jpg 2\n')
    with pytest.raises(ListFileError) as error:
        read_list(path, num_classes=5)
    message = str(error.value)
    assert str(path) in message
    for expected in ('line 2: no label', "line 3: label 'x'",
                     'line 4: label 7 is outside 0..4', 'line 5: a.jpg is listed twice'):
        assert expected in message
    assert 'line 1:' not in message


def test_empty_and_missing_lists_are_errors(tmp_path):
    with pytest.raises(ListFileError, match='lists no images'):
        read_list(write(tmp_path / 'empty.txt', '# nothing\n\n'))
    with pytest.raises(ListFileError, match='not found'):
        read_list(str(tmp_path / 'absent.txt'))


# ---- loaders ---------------------------------------------------------------

def save_mode(folder, mode, rgb):
    """`rgb` saved as an image of PIL mode `mode`; returns (path, expected
    BGR array before resizing, as both loaders should see it)."""
    if mode == 'I;16':
        gray16 = (np.asarray(Image.fromarray(rgb).convert('L'), np.uint16) * 257)
        path = os.path.join(str(folder), 'gray16.png')
        cv2.imwrite(path, gray16)
        gray = (gray16 >> 8).astype(np.uint8)
        return path, np.dstack([gray] * 3)
    image = Image.fromarray(rgb)
    if mode == 'P':
        image = image.quantize(16)
    elif mode != 'RGB':
        image = image.convert(mode)
    extension = 'jpg' if mode in ('CMYK',) else 'png'
    path = os.path.join(str(folder), 'image_%s.%s' % (mode, extension))
    image.save(path, quality=95) if extension == 'jpg' else image.save(path)
    expected = np.asarray(Image.open(path).convert('RGB'))[:, :, ::-1]
    return path, expected


@pytest.mark.parametrize('mode', ['RGB', 'L', 'LA', 'RGBA', 'P', 'CMYK', 'I;16'])
@pytest.mark.parametrize('loader', ['opencv', 'pil'])
def test_every_mode_loads_as_three_channels(tmp_path, mode, loader):
    rng = np.random.default_rng(3)
    # Smooth content, so the JPEG and palette round trips stay close.
    base = cv2.resize(rng.integers(0, 256, (8, 10, 3), dtype=np.uint8),
                      (320, 280), interpolation=cv2.INTER_CUBIC)
    path, expected = save_mode(tmp_path, mode, base)
    image = load_image(path, loader)
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8
    reference = cv2.resize(expected, (256, 256), interpolation=cv2.INTER_AREA)
    difference = np.abs(image.astype(float) - reference).mean()
    assert difference < 3.0, (mode, loader, difference)


@pytest.mark.parametrize('loader', ['opencv', 'pil'])
def test_unreadable_images_name_the_file(tmp_path, loader):
    for name, content in (('empty.jpg', b''), ('text.jpg', b'not an image'),
                          ('cut.jpg', None)):
        path = os.path.join(str(tmp_path), name)
        if content is None:  # a JPEG cut in its header
            good = os.path.join(str(tmp_path), 'good.jpg')
            cv2.imwrite(good, np.zeros((50, 50, 3), np.uint8))
            content = open(good, 'rb').read()[:100]
        with open(path, 'wb') as f:
            f.write(content)
        with pytest.raises(ImageError, match=name):
            load_image(path, loader)
    with pytest.raises(ImageError, match='absent.jpg'):
        load_image(os.path.join(str(tmp_path), 'absent.jpg'), loader)


def test_strict_generator_stops_naming_list_and_line(tmp_path):
    make_images(tmp_path, 1)
    path = write(tmp_path / 'list.txt', 'img 0.jpg 0\nmissing.jpg 1\n')
    generator = ImageDataGenerator(path, num_classes=2, strict=True)
    with pytest.raises(ImageError) as error:
        generator.next_batch(2)
    assert 'missing.jpg' in str(error.value) and 'line 2' in str(error.value)


def test_bad_images_are_skipped_once_warned_and_counted(tmp_path, capsys):
    make_images(tmp_path, 4)
    (tmp_path / 'broken.jpg').write_bytes(b'\xff\xd8 not really')
    cv2.imwrite(str(tmp_path / 'dot.png'), np.zeros((1, 1, 3), np.uint8))
    path = write(tmp_path / 'list.txt', 'img 0.jpg 0\nbroken.jpg 1\n'
                 'img 1.jpg 1\ndot.png 2\nmissing.jpg 0\nimg 2.jpg 2\n')
    generator = ImageDataGenerator(path, num_classes=3, seed=0)
    images, labels = generator.next_batch(6)
    assert len(images) == 3  # no placeholder for the three bad ones
    assert list(labels.argmax(axis=1)) == [0, 1, 2]
    expected = load_image(str(tmp_path / 'img 1.jpg')).astype(np.float32)
    np.testing.assert_allclose(images[1] + IMAGENET_MEAN_BGR,
                               expected[14:241, 14:241], atol=1e-3)
    err = capsys.readouterr().err
    assert err.count('Warning: skipping') == 3
    for name, line in (('broken.jpg', 2), ('dot.png', 4), ('missing.jpg', 5)):
        assert '%s' % name in err and 'line %d' % line in err
    assert 'too small' in err
    assert len(generator.skipped) == 3
    generator.reset_pointer()
    assert len(generator.next_batch(6)[0]) == 3
    assert capsys.readouterr().err == ''  # warned once, not every epoch


def test_loaders_agree_on_the_real_images(flowers):
    files = sorted(glob.glob(os.path.join(flowers, 'jpg', '*.jpg')))[::25]
    differences = []
    for path in files:
        a = load_image(path, 'opencv').astype(np.float64)[14:241, 14:241]
        b = load_image(path, 'pil').astype(np.float64)[14:241, 14:241]
        differences.append(np.abs(a - b).mean())
    assert len(files) >= 50
    assert np.mean(differences) <= 2.0, np.mean(differences)


# ---- batches ---------------------------------------------------------------

@pytest.fixture
def image_list(tmp_path):
    names = make_images(tmp_path, 10)
    return write(tmp_path / 'list.txt', ''.join(
        '%s %d\n' % (name, i % 3) for i, name in enumerate(names)))


def test_batches_cover_every_image_once_with_a_smaller_last_batch(image_list):
    generator = ImageDataGenerator(image_list, horizontal_flip=True,
                                   shuffle=True, num_classes=3, seed=0)
    assert generator.data_size == 10
    sizes, labels = [], []
    for images, one_hot in generator.batches(4):
        assert images.dtype == np.float32 and images.shape[1:] == (227, 227, 3)
        assert one_hot.shape[1] == 3 and (one_hot.sum(axis=1) == 1).all()
        sizes.append(len(images))
        labels.extend(one_hot.argmax(axis=1))
    assert sizes == [4, 4, 2]
    assert sorted(labels) == sorted(i % 3 for i in range(10))
    assert generator.next_batch(4)[0].shape[0] == 0


def test_evaluation_batch_is_the_centre_crop_minus_the_mean(image_list):
    generator = ImageDataGenerator(image_list, num_classes=3)
    images, labels = generator.next_batch(3)
    for i in range(3):
        expected = load_image(generator.images[i]).astype(np.float32)
        expected = expected[14:241, 14:241] - IMAGENET_MEAN_BGR
        np.testing.assert_allclose(images[i], expected, atol=1e-4)
        assert labels[i].argmax() == i % 3


def test_training_crops_and_flips_come_from_the_resized_image(image_list):
    generator = ImageDataGenerator(image_list, horizontal_flip=True,
                                   shuffle=True, num_classes=3, seed=5)
    images, _ = generator.next_batch(10)
    flips = 0
    for i in range(10):
        full = load_image(generator.images[generator.order[i]]).astype(np.float32)
        y, x = generator.offsets[i]
        crop = full[y:y + 227, x:x + 227]
        if generator.flips[i]:
            crop = crop[:, ::-1]
            flips += 1
        np.testing.assert_allclose(images[i] + IMAGENET_MEAN_BGR, crop, atol=1e-3)
    assert 0 < flips < 10
    assert len({tuple(o) for o in generator.offsets}) > 1


def test_without_a_mean_batches_are_the_same_pixels_as_uint8(image_list):
    """mean=None (what training uses): the same crops and flips, as uint8
    pixels, a quarter of the bytes; the graph subtracts the mean."""
    settings = dict(horizontal_flip=True, shuffle=True, num_classes=3, seed=3)
    centred, labels = ImageDataGenerator(image_list, **settings).next_batch(6)
    pixels, same_labels = ImageDataGenerator(image_list, mean=None,
                                             **settings).next_batch(6)
    assert pixels.dtype == np.uint8 and pixels.nbytes * 4 == centred.nbytes
    np.testing.assert_allclose(pixels - IMAGENET_MEAN_BGR, centred, atol=1e-4)
    np.testing.assert_array_equal(labels, same_labels)


def test_seed_makes_epochs_reproducible_and_reset_reshuffles(image_list):
    def epoch_batches(seed, workers):
        generator = ImageDataGenerator(image_list, horizontal_flip=True,
                                       shuffle=True, num_classes=3, seed=seed,
                                       workers=workers)
        first = list(generator.order)
        a = np.concatenate([b[0] for b in generator.batches(3)])
        generator.reset_pointer()
        return first, list(generator.order), a
    first1, second1, images1 = epoch_batches(7, workers=1)
    first2, second2, images2 = epoch_batches(7, workers=4)
    assert first1 == first2 and second1 == second2
    np.testing.assert_array_equal(images1, images2)
    assert first1 != second1  # a new order each epoch
    assert epoch_batches(8, workers=2)[0] != first1


@pytest.mark.parametrize('loader', ['opencv', 'pil'])
def test_both_loaders_give_the_same_batch(image_list, loader):
    other = {'opencv': 'pil', 'pil': 'opencv'}[loader]
    a, _ = ImageDataGenerator(image_list, num_classes=3, loader=loader).next_batch(10)
    b, _ = ImageDataGenerator(image_list, num_classes=3, loader=other).next_batch(10)
    assert np.abs(a - b).mean() < 2.0


def test_unknown_loader_is_refused(image_list):
    with pytest.raises(ValueError, match='opencv'):
        ImageDataGenerator(image_list, loader='skimage')


@pytest.mark.parametrize('mode', ['RGB', 'L', 'LA', 'RGBA', 'P', 'CMYK', 'I;16'])
def test_both_loaders_read_every_mode_alike(tmp_path, mode):
    rng = np.random.default_rng(4)
    base = cv2.resize(rng.integers(0, 256, (8, 10, 3), dtype=np.uint8),
                      (640, 520), interpolation=cv2.INTER_CUBIC)
    path, _ = save_mode(tmp_path, mode, base)
    # At the image's own size nothing is resized: the decoded pixels.
    a = load_image(path, 'opencv', size=(640, 520)).astype(np.float64)
    b = load_image(path, 'pil', size=(640, 520)).astype(np.float64)
    if mode == 'CMYK':  # the two convert CMYK to RGB with their own rounding
        assert np.abs(a - b).max() <= 1, mode
    else:
        np.testing.assert_array_equal(a, b, err_msg=mode)
    resized_a, resized_b = load_image(path, 'opencv'), load_image(path, 'pil')
    assert np.abs(resized_a.astype(float) - resized_b).mean() < 1.0, mode


def test_a_list_of_many_bad_lines_shows_the_first_and_counts_all(tmp_path):
    path = write(tmp_path / 'wrong.txt', ''.join('img%d.jpg %d\n' % (i, 500 + i)
                                                 for i in range(80)))
    with pytest.raises(ListFileError) as error:
        read_list(path, num_classes=102)
    message = str(error.value)
    assert 'has 80 bad line(s)' in message and '... and 30 more' in message
    assert 'line 50:' in message and 'line 51:' not in message


@pytest.mark.filterwarnings('ignore::PIL.Image.DecompressionBombWarning')
@pytest.mark.parametrize('loader', ['opencv', 'pil'])
def test_huge_images_are_refused_before_decoding(tmp_path, loader):
    """A PNG header that announces 10000x10000 pixels (a decompression bomb
    needs no more than that to fill the memory)."""
    import struct
    import zlib

    def chunk(kind, body):
        return (struct.pack('>I', len(body)) + kind + body +
                struct.pack('>I', zlib.crc32(kind + body)))
    header = struct.pack('>IIBBBBB', 10000, 10000, 8, 2, 0, 0, 0)
    path = tmp_path / 'bomb.png'
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) +
                     chunk(b'IDAT', zlib.compress(b'\0' * 1000)) +
                     chunk(b'IEND', b''))
    with pytest.raises(ImageError, match='bomb.png is too large'):
        load_image(str(path), loader)


# ---- resuming inside an epoch -------------------------------------------------

def test_an_epoch_resumed_at_a_position_gives_the_rest_of_that_epoch(
        image_list):
    """A run stopped after 1 step of 4 images continues with the batches
    the uninterrupted run would have made, crops and mirrors included."""
    settings = dict(horizontal_flip=True, shuffle=True, num_classes=3, seed=9)
    whole = ImageDataGenerator(image_list, **settings)
    whole.reset_pointer(epoch=3)
    expected = list(whole.batches(4))
    resumed = ImageDataGenerator(image_list, **settings)
    resumed.reset_pointer(epoch=3, position=4)
    rest = list(resumed.batches(4))
    assert len(rest) == len(expected) - 1
    for (images, labels), (same_images, same_labels) in zip(rest, expected[1:]):
        np.testing.assert_array_equal(images, same_images)
        np.testing.assert_array_equal(labels, same_labels)
    resumed.reset_pointer()  # the next epoch starts at its beginning
    assert resumed.epoch == 4 and resumed.pointer == 0


@pytest.mark.parametrize('position', [-1, 11])
def test_a_position_outside_the_epoch_is_refused(image_list, position):
    generator = ImageDataGenerator(image_list, num_classes=3)
    with pytest.raises(ValueError, match='position'):
        generator.reset_pointer(epoch=0, position=position)


def test_index_batches_cut_the_epoch_as_batches_do(image_list):
    settings = dict(shuffle=True, num_classes=3, seed=2)
    indices = ImageDataGenerator(image_list, **settings)
    indices.reset_pointer(epoch=1, position=2)
    images = ImageDataGenerator(image_list, **settings)
    images.reset_pointer(epoch=1, position=2)
    cuts = list(indices.index_batches(3))
    assert [len(cut) for cut in cuts] == [3, 3, 2]
    for cut, (_, labels) in zip(cuts, images.batches(3)):
        np.testing.assert_array_equal(indices.one_hot(cut), labels)
    assert indices.pointer == images.pointer == 10
    indices.reset_pointer()
    with pytest.raises(ValueError, match='batch_size'):
        next(indices.index_batches(0))
