"""List files: encodings, labels, duplicates, and where missing images are."""
import os

import numpy as np
import pytest

from imagelists import ListFileError, images_hint, missing_images, read_list


def write_bytes(path, data):
    path.write_bytes(data)
    return str(path)


# ---- encodings --------------------------------------------------------------

def test_a_byte_order_mark_is_not_glued_to_the_first_path(tmp_path):
    """Windows Notepad starts UTF-8 files with EF BB BF."""
    path = write_bytes(tmp_path / 'list.txt',
                       '\ufeffrosé.jpg 1\r\ntulip.jpg 2\r\n'.encode('utf-8'))
    paths, labels, lines = read_list(path, replacementpath='/data')
    assert paths == ['/data/rosé.jpg', '/data/tulip.jpg']
    assert labels == [1, 2] and lines == [1, 2]


@pytest.mark.parametrize('encoding, expected', [
    ('utf-16', 'UTF-16'),          # Notepad's "Unicode"
    ('utf-16-be', 'zero bytes'),   # no byte-order mark: seen as binary
    ('latin-1', 'line 2 holds the byte 0xE9'),
    ('cp1252', 'line 2 holds the byte 0xE9')])
def test_a_list_in_another_encoding_names_the_file_and_the_fix(
        tmp_path, encoding, expected):
    text = 'tulip.jpg 2\nrosé.jpg 1\n'
    path = write_bytes(tmp_path / 'list.txt', text.encode(encoding))
    with pytest.raises(ListFileError) as error:
        read_list(path)
    message = str(error.value)
    assert path in message and expected in message
    assert 'save it as UTF-8' in message


@pytest.mark.parametrize('content', [
    b'\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01' + bytes(range(256)),  # a JPEG
    bytes(np.random.default_rng(0).integers(128, 256, 300, dtype=np.uint8)),
    b'PK\x03\x04' + b'\x00' * 40])                                 # a zip
def test_a_binary_file_given_as_a_list_is_refused_by_name(tmp_path, content):
    path = write_bytes(tmp_path / 'photo.jpg', content)
    with pytest.raises(ListFileError) as error:
        read_list(path)
    assert path in str(error.value) and 'UTF-8' in str(error.value)


def test_a_folder_given_as_a_list_is_refused(tmp_path):
    with pytest.raises(ListFileError, match='is a folder, not a list file'):
        read_list(str(tmp_path))


# ---- labels -----------------------------------------------------------------

@pytest.mark.parametrize('label', ['+1', '1_0', '\u0661', '1e1', '0x1', '-1',
                                   '1.0', '\u00b2', '\uff11', '\u0967'])
def test_labels_are_plain_ascii_integers(tmp_path, label):
    """int() would read '+1', '1_0' (as 10), '١' (Arabic-Indic one), '１'
    (full-width one) and '१' (Devanagari one); '²' passes str.isdigit."""
    path = write_bytes(tmp_path / 'list.txt',
                       ('a.jpg 0\nb.jpg %s\nc.jpg 1\n' % label).encode())
    with pytest.raises(ListFileError) as error:
        read_list(path, num_classes=20)
    message = str(error.value)
    assert 'line 2: label %r is not a class number' % label in message
    assert 'has 1 bad line(s)' in message


def test_leading_zeros_and_spaces_are_fine(tmp_path):
    path = write_bytes(tmp_path / 'list.txt', b'a.jpg 007\n  b.jpg\t 3  \n')
    assert read_list(path, num_classes=10)[1] == [7, 3]


# ---- duplicates -------------------------------------------------------------

def test_two_folders_that_replacementpath_maps_to_one_file(tmp_path):
    path = write_bytes(tmp_path / 'list.txt', b'roses/001.jpg 3\n'
                       b'tulips/002.jpg 4\ntulips/001.jpg 5\n')
    with pytest.raises(ListFileError) as error:
        read_list(path, replacementpath='/data/jpg')
    message = str(error.value)
    assert 'line 3: tulips/001.jpg and roses/001.jpg (line 1)' in message
    assert '/data/jpg/001.jpg' in message
    assert 'two labels: 5 here, 3 on line 1' in message
    read_list(path)  # without replacementpath they are two files


@pytest.mark.parametrize('first, second', [
    ('./x.jpg', 'x.jpg'), ('sub/../x.jpg', 'x.jpg'), ('x.jpg', 'x.jpg')])
def test_two_spellings_of_one_path(tmp_path, first, second):
    path = write_bytes(tmp_path / 'list.txt',
                       ('%s 1\ny.jpg 1\n%s 2\n' % (first, second)).encode())
    with pytest.raises(ListFileError) as error:
        read_list(path)
    message = str(error.value)
    assert 'line 3:' in message and 'line 1' in message
    assert 'two labels: 2 here, 1 on line 1' in message


def test_the_same_image_twice_with_the_same_label_is_refused(tmp_path):
    """It would count twice in every epoch: refused, like two labels."""
    absolute = str(tmp_path / 'x.jpg')
    path = write_bytes(tmp_path / 'list.txt',
                       ('x.jpg 4\n%s 4\n' % absolute).encode())
    with pytest.raises(ListFileError) as error:
        read_list(path)
    assert ('line 2: %s and x.jpg (line 1) are the same file' % absolute
            in str(error.value))
    assert 'same label' in str(error.value)


def test_old_mac_and_windows_line_ends_keep_line_numbers(tmp_path):
    path = write_bytes(tmp_path / 'list.txt', b'a.jpg 0\rb.jpg 1\r\nc.jpg x\n')
    with pytest.raises(ListFileError, match="line 3: label 'x'"):
        read_list(path)


# ---- where the images are ---------------------------------------------------

@pytest.fixture
def dataset(tmp_path):
    """data/oxford102/jpg with two images, and a list of absolute paths to
    them; returns (dataset folder, list file)."""
    images = tmp_path / 'data' / 'oxford102' / 'jpg'
    images.mkdir(parents=True)
    (tmp_path / 'data' / 'oxford102' / 'other').mkdir()
    for name in ('image_00001.jpg', 'image_00002.jpg'):
        (images / name).write_bytes(b'jpeg')
    list_file = write_bytes(tmp_path / 'list.txt', (
        '%s 0\n%s 1\n' % (images / 'image_00001.jpg',
                          images / 'image_00002.jpg')).encode())
    return str(tmp_path / 'data' / 'oxford102'), list_file


def hint_for(list_file, replacementpath):
    paths, _, lines = read_list(list_file, replacementpath)
    return images_hint(list_file, paths, replacementpath), paths, lines


def test_hint_when_replacementpath_is_the_dataset_folder(dataset):
    folder, list_file = dataset
    hint, paths, lines = hint_for(list_file, folder)
    assert len(missing_images(paths, lines)) == 2
    assert hint == ('the images are in %s: set replacementpath to it'
                    % os.path.join(folder, 'jpg'))


def test_hint_when_the_listed_paths_exist_as_written(dataset, tmp_path):
    _, list_file = dataset
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    hint, _, _ = hint_for(list_file, str(elsewhere))
    assert hint.startswith('the listed paths exist as written in %s'
                           % list_file)
    assert "set replacementpath = ''" in hint


def test_no_hint_when_the_images_are_nowhere_or_all_there(dataset, tmp_path):
    folder, list_file = dataset
    for name in os.listdir(os.path.join(folder, 'jpg')):
        os.rename(os.path.join(folder, 'jpg', name),
                  str(tmp_path / ('moved_' + name)))
    assert hint_for(list_file, folder)[0] is None
    assert hint_for(list_file, str(tmp_path / 'absent'))[0] is None
    assert hint_for(list_file, '')[0] is None
    present = write_bytes(tmp_path / 'present.txt',
                          b'moved_image_00001.jpg 0\n')
    assert hint_for(present, '')[0] is None  # nothing missing


def test_a_hint_needs_every_missing_image(dataset):
    """One image found under jpg/ is no proof: the hint must be right."""
    folder, list_file = dataset
    os.remove(os.path.join(folder, 'jpg', 'image_00002.jpg'))
    assert hint_for(list_file, folder)[0] is None
