"""Both loaders refuse the same damaged JPEGs and unscalable TIFFs, and
read every whole image; the check is safe in threads."""
import glob
import io
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from PIL import Image

import jpegscan
from imagefiles import ImageError, load_image

LOADERS = ('opencv', 'pil')


def smooth_bgr(width=320, height=240, seed=0):
    """Photo-like smooth content (noise would compress oddly)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def encode(bgr, *params):
    return cv2.imencode('.jpg', bgr, list(params))[1].tobytes()


def pillow_jpeg(image, **options):
    buffer = io.BytesIO()
    image.save(buffer, 'JPEG', **options)
    return buffer.getvalue()


def scan_of(data):
    """(start, end) of the scan data of a one-scan JPEG."""
    structure = jpegscan.read_structure(data)
    return structure.scan_start, structure.scan_end


def cut_and_end(data):
    start, end = scan_of(data)
    return data[:end - 600] + b'\xff\xd9'


def chunk_deleted(data):
    start, end = scan_of(data)
    middle = (start + end) // 2
    return data[:middle] + data[middle + 300:]


def bytes_inserted(data, count=300, at=None):
    start, end = scan_of(data)
    at = (start + end) // 2 if at is None else at
    junk = bytes(np.random.default_rng(1).integers(0, 255, count,
                                                   dtype=np.uint8))
    return data[:at] + junk + data[at:]


def marker_inside(data):
    start, end = scan_of(data)
    middle = (start + end) // 2
    return data[:middle] + b'\xff\xc0' + data[middle + 2:]


def restart_out_of_order(data):
    second = data.index(b'\xff\xd1')  # the second restart marker
    return data[:second] + b'\xff\xd5' + data[second + 2:]


BASE = encode(smooth_bgr(), cv2.IMWRITE_JPEG_QUALITY, 90)
WITH_RESTARTS = encode(smooth_bgr(), cv2.IMWRITE_JPEG_RST_INTERVAL, 4)

#: name -> bytes of a JPEG whose scan libjpeg finds damaged.
CORRUPT = {
    'cut, then an end marker': cut_and_end(BASE),
    'a chunk deleted': chunk_deleted(BASE),
    'bytes inserted': bytes_inserted(BASE),
    'bytes inserted at the end': bytes_inserted(BASE, 30, scan_of(BASE)[1]),
    'a marker inside the scan': marker_inside(BASE),
    'restart markers out of order': restart_out_of_order(WITH_RESTARTS),
    'restart segments lost': chunk_deleted(WITH_RESTARTS),
}

#: name -> bytes of a whole JPEG that both loaders must read.
WHOLE = {
    'baseline': BASE,
    'restart markers': WITH_RESTARTS,
    'progressive': encode(smooth_bgr(), cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
    'optimised tables': pillow_jpeg(Image.fromarray(smooth_bgr()),
                                    optimize=True),
    '4:4:4': pillow_jpeg(Image.fromarray(smooth_bgr()), subsampling=0),
    'grayscale': encode(cv2.cvtColor(smooth_bgr(), cv2.COLOR_BGR2GRAY)),
    'CMYK': pillow_jpeg(Image.fromarray(smooth_bgr()).convert('CMYK')),
    'tiny': encode(smooth_bgr(16, 16)),
    'flat grey': encode(np.full((64, 64, 3), 128, np.uint8)),
    # A byte or two left before the end marker by some encoders: libjpeg
    # may warn, but the picture is whole (TOLERANCE).
    'two stray bytes': bytes_inserted(BASE, 2, scan_of(BASE)[1]),
}


def save(folder, cases):
    paths = {}
    for name, data in cases.items():
        paths[name] = str(folder / (name.replace(' ', '_') + '.jpg'))
        with open(paths[name], 'wb') as f:
            f.write(data)
    return paths


def libjpeg_verdicts(paths):
    """{path: (warning text, decoded or not)} from OpenCV in a subprocess:
    libjpeg prints its warnings on the process's stderr, which no Python
    code can read in-process."""
    script = ('import os, sys, cv2\n'
              'for path in sys.argv[1:]:\n'
              '    image = cv2.imread(path)\n'
              '    os.write(2, ("\\n@@ %s %d\\n" % (path, image is not None))'
              '.encode())\n')
    result = subprocess.run([sys.executable, '-c', script] + list(paths),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, check=True)
    verdicts, text = {}, ''
    for line in result.stderr.splitlines():
        if line.startswith('@@ '):
            path, decoded = line[3:].rsplit(' ', 1)
            verdicts[path] = (text, decoded == '1')
            text = ''
        else:
            text += line
    return verdicts


def test_the_corrupt_cases_are_what_libjpeg_calls_corrupt(tmp_path):
    """The fixtures mean something: libjpeg warns about (or fails on) every
    corrupt one, and says nothing about the whole ones (the stray bytes
    may draw a warning, which is why they are tolerated by name)."""
    corrupt, whole = save(tmp_path, CORRUPT), save(tmp_path, WHOLE)
    verdicts = libjpeg_verdicts(list(corrupt.values()) + list(whole.values()))
    for name, path in corrupt.items():
        warning, decoded = verdicts[path]
        assert 'Corrupt JPEG data' in warning or not decoded, name
    for name, path in whole.items():
        warning, decoded = verdicts[path]
        assert decoded, name
        assert name == 'two stray bytes' or not warning, (name, warning)


@pytest.mark.parametrize('loader', LOADERS)
@pytest.mark.parametrize('name', sorted(CORRUPT))
def test_corrupt_jpeg_data_is_refused_naming_the_file(tmp_path, loader, name):
    path = save(tmp_path, {name: CORRUPT[name]})[name]
    with pytest.raises(ImageError) as error:
        load_image(path, loader)
    assert path in str(error.value)
    assert 'corrupt JPEG data' in str(error.value)
    assert error.value.kind == 'corrupt JPEG data'


@pytest.mark.parametrize('name', sorted(WHOLE))
def test_whole_jpegs_load_alike_in_both_loaders(tmp_path, name):
    path = save(tmp_path, {name: WHOLE[name]})[name]
    a, b = (load_image(path, loader).astype(float) for loader in LOADERS)
    assert a.shape == (256, 256, 3)
    assert np.abs(a - b).mean() < 2.0


def test_the_check_gives_the_same_answers_in_threads(tmp_path):
    """Decoding runs in worker threads: every check keeps its own state."""
    paths = (list(save(tmp_path, CORRUPT).values()) +
             list(save(tmp_path, WHOLE).values()))

    def outcome(job):
        path, loader = job
        try:
            return int(load_image(path, loader).sum())
        except ImageError as error:
            return error.kind
    jobs = [(path, loader) for path in paths for loader in LOADERS] * 4
    serial = [outcome(job) for job in jobs]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(outcome, jobs)) == serial
    assert serial.count('corrupt JPEG data') == 4 * 2 * len(CORRUPT)


def test_no_real_photo_is_flagged(flowers):
    """The check on every Oxford photo here, then both loaders on some."""
    files = sorted(glob.glob(os.path.join(flowers, 'jpg', '*.jpg')))
    flagged = []
    for path in files:
        with open(path, 'rb') as f:
            check = jpegscan.ScanCheck(f.read())
        assert check.checked, path  # the data check applies to them all
        if check.fault or check.decode():
            flagged.append(path)
    assert flagged == []
    for path in files[::100]:
        for loader in LOADERS:
            load_image(path, loader)


# ---- TIFFs of 16 bits, floats and 32-bit integers ---------------------------

def gray_and_bgr():
    bgr = smooth_bgr(64, 48)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), bgr


def write_samples(folder, case):
    """Write the case's TIFF; returns (path, the expected 8-bit BGR image,
    or None where both loaders must refuse it)."""
    gray, bgr = gray_and_bgr()
    path = str(folder / (case.replace(' ', '_') + '.tiff'))
    as_bgr = np.dstack([gray] * 3)
    arrays = {
        'cv2 uint16 gray': (gray.astype(np.uint16) * 257, as_bgr),
        'cv2 uint16 colour': (bgr.astype(np.uint16) * 256 + 100, bgr),
        'cv2 float32 gray': (gray.astype(np.float32) / 255, None),
        'cv2 float32 colour': (bgr.astype(np.float32) / 255, None),
        'cv2 float64 gray': (gray.astype(np.float64), None),
        'cv2 int32 gray': (gray.astype(np.int32) * 1000, None)}
    if case in arrays:
        array, expected = arrays[case]
        assert cv2.imwrite(path, array)
        return path, expected
    mode = case.split()[-1]  # Pillow's mode
    data = {'I;16': gray.astype(np.uint16) * 257,
            'F': gray.astype(np.float32), 'I': gray.astype(np.int32)}[mode]
    Image.fromarray(data).save(path)
    return path, as_bgr if mode == 'I;16' else None


SAMPLE_CASES = ['cv2 uint16 gray', 'cv2 uint16 colour', 'Pillow mode I;16',
                'cv2 float32 gray', 'cv2 float32 colour', 'cv2 float64 gray',
                'cv2 int32 gray', 'Pillow mode F', 'Pillow mode I']


@pytest.mark.parametrize('case', SAMPLE_CASES)
def test_both_loaders_agree_on_tiff_samples(tmp_path, case):
    """16-bit samples read as 0..255 by both (to within a rounding);
    float and 32-bit ones (no fixed scale to 0..255) refused by both, with
    the reason."""
    path, expected = write_samples(tmp_path, case)
    for loader in LOADERS:
        if expected is None:
            with pytest.raises(ImageError) as error:
                load_image(path, loader, size=(64, 48))
            assert error.value.kind == 'unsupported samples', loader
            assert path in str(error.value)
            assert ('floating-point' in str(error.value)) == ('float' in case
                                                             or 'F' in case)
        else:  # OpenCV rounds value/257, Pillow keeps the high byte
            image = load_image(path, loader, size=(64, 48)).astype(int)
            assert np.abs(image - expected).max() <= 1, loader
