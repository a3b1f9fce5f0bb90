#!/usr/bin/env python3
"""Download the Oxford 102 Flowers dataset and the AlexNet weights, verified.

    python tools/download.py                   # dataset and weights
    python tools/download.py --only data       # images, labels, split
    python tools/download.py --only weights    # bvlc_alexnet.npy

What it fetches:

* from the dataset's home page (``--base-url``), into ``--dest``
  (default ``data/oxford102``): ``102flowers.tgz`` (unpacked there, so the
  images land in ``data/oxford102/jpg/``), ``imagelabels.mat`` and
  ``setid.mat``;
* ``bvlc_alexnet.npy`` (``--weights-url``) into ``--weights-dest`` (default:
  the project root, where ``alexnet.py`` looks for it).

How a download behaves, and why:

1. A file that is already there and passes its check is not fetched again.
2. The bytes go to ``NAME.part``; only a complete file that passes its check
   is renamed to ``NAME``. A half-written ``NAME`` never exists. The dataset
   files are checked by md5. The weights' md5 was never published: they are
   checked by size, then read with the project's safe reader (weights.py),
   as a size is easy to fake: a hostile file padded to the right size would
   pass it.
3. An interrupted download resumes: the next request asks for the missing
   bytes only (HTTP ``Range: bytes=N-``). A server that ignores Range answers
   ``200`` with the whole file; we then start the part over.
4. Trouble that may pass (timeouts, dropped connections, HTTP 5xx) is
   retried with exponential back-off: wait ``backoff``, ``2*backoff``,
   ``4*backoff`` ... seconds. Trouble that waiting does not heal fails at
   once: a host name that does not resolve (no network), a refused or
   unreachable connection, HTTP 4xx such as 404.
5. Nothing is written past a file's known size (or, for a file of unknown
   size, a generous ceiling): a server that sends more, with a wrong or no
   Content-Length, is cut off and the part deleted.
6. A file that fails its check is deleted, with a message: resuming from
   corrupt bytes would only fail again.

The archive is unpacked by ``safe_extract.py``, which refuses members that
would land outside the destination; ``download_progress.py`` reports each
download.

Standard library only (numpy for the weights' check); tqdm, when installed,
draws the progress bars.
"""
import argparse
import errno
import hashlib
import http.client
import os
import socket
import sys
import tarfile
import time
import urllib.error
import urllib.request

from download_progress import Progress
from safe_extract import UnsafeArchiveError, safe_extract

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_URL = 'https://www.robots.ox.ac.uk/~vgg/data/flowers/102/'
#: the dataset files and their published md5s
DATA_FILES = {
    '102flowers.tgz': '52808999861908f626f3c1f4e79d11fa',
    'imagelabels.mat': 'e0620be6f572b9609742df49c70aed4d',
    'setid.mat': 'a5357ecc9cb78c4bef273ce3793fc85c',
}
#: the most bytes each dataset file may have (the real ones: about 345 MB,
#: 500 B and 15 kB), so that a server streaming without end is cut off
DATA_MAX_SIZES = {'102flowers.tgz': 400 * 10**6, 'imagelabels.mat': 10**6,
                  'setid.mat': 10**6}
ARCHIVE = '102flowers.tgz'
WEIGHTS_URL = 'http://www.cs.toronto.edu/~guerzhoy/tf_alexnet/bvlc_alexnet.npy'
WEIGHTS_FILE = 'bvlc_alexnet.npy'
WEIGHTS_SIZE = 243861814
CHUNK = 1 << 16

WEIGHTS_HELP = """\
Could not fetch the AlexNet weights. Other routes (details in bvlc_alexnet.npy.md):
  * download bvlc_alexnet.npy by hand from a mirror and pass its address:
      python tools/download.py --only weights --weights-url URL
    or copy it beside alexnet.py (it must be 243,861,814 bytes);
  * convert Caffe's original (BVLC model zoo, bvlc_alexnet.caffemodel,
    sha1 9116a64c0fbe4459d18f4bb6b56d647b63920377):
      python tools/convert_weights.py bvlc_alexnet.caffemodel bvlc_alexnet.npz
  * convert the ONNX model zoo's bvlcalexnet-*.onnx:
      python tools/convert_weights.py bvlcalexnet-12.onnx bvlc_alexnet.npz
  * or train without ImageNet weights: python finetune.py --scratch"""

DATA_HELP = """\
Could not fetch the Oxford 102 dataset. Other routes:
  * a mirror that serves the same files:
      python tools/download.py --only data --base-url URL --dest {dest}
  * or fetch these by hand (a browser, another machine):
{urls}
    put them in {dest} and run the same command without --base-url:
    it checks their md5 and unpacks the images into {jpg}"""


def data_help(base_url, dest):
    """What to do when the dataset cannot be downloaded from base_url."""
    urls = '\n'.join('      ' + base_url.rstrip('/') + '/' + name
                     for name in DATA_FILES)
    return DATA_HELP.format(dest=dest, urls=urls,
                            jpg=os.path.join(dest, 'jpg'))


class DownloadError(Exception):
    """A file could not be fetched or failed its check."""


# --------------------------------------------------------------- checking

def md5sum(path):
    """The md5 of a file as 32 hex digits, read in chunks (files are big)."""
    digest = hashlib.md5()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def verify(path, md5=None, size=None, check=None):
    """None when the file matches the expected size and md5 and passes
    check(path) (a function returning None or the problem), else the problem.

    The size is checked first: it is free, and a wrong size makes the rest
    pointless.
    """
    actual = os.path.getsize(path)
    if size is not None and actual != size:
        return 'size %d bytes, expected %d' % (actual, size)
    if md5 is not None:
        actual = md5sum(path)
        if actual != md5:
            return 'md5 %s, expected %s' % (actual, md5)
    return check(path) if check is not None else None


def weights_problem(path):
    """None when `path` reads as AlexNet's weights with weights.py's safe
    reader (which refuses hostile pickles) and has their shapes and finite
    values, else the reader's message."""
    import weights  # needs numpy, which only this check uses
    try:
        weights.check_layers(weights.read_weights(path),
                             weights.ALEXNET_SHAPES, path=path)
    except weights.WeightsFileError as error:
        return 'not usable weights: %s' % error
    return None


# --------------------------------------------------------------- download

#: Network trouble: refused, reset or dropped connections, timeouts, a
#: response cut short, HTTP errors. permanent_failure says which may pass.
NETWORK_ERRORS = (urllib.error.URLError, ConnectionError, TimeoutError,
                  socket.timeout, http.client.HTTPException)


def permanent_failure(error):
    """Why waiting will not help, or None when a retry may succeed.

    Offline, the name lookup fails at once, every time (often as a
    "temporary" failure); so does a refused connection. Retrying those, or
    a 404, only makes the user wait.
    """
    if isinstance(error, urllib.error.HTTPError):
        if error.code >= 500 or error.code in (408, 429):
            return None
        return 'the server refuses this file'
    reason = getattr(error, 'reason', error)   # URLError wraps the cause
    if isinstance(reason, socket.gaierror):
        return 'the host name does not resolve: no network, or a wrong address'
    if isinstance(reason, OSError) and reason.errno in (
            errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH):
        return 'no connection: the host is unreachable or serves nothing there'
    if isinstance(error, urllib.error.URLError) and isinstance(reason, str):
        return 'a wrong address'               # "unknown url type" and such
    return None


class TooLarge(DownloadError):
    """The server sent more than the file can hold."""


def fetch_once(url, dest, timeout=60, limit=None):
    """One HTTP request that appends the missing bytes of `url` to dest.part.

    With a part already on disk, ask for the rest only (``Range``). The
    server answers 206 (partial content: append), 200 (it ignores Range:
    start the part over) or 416 (nothing left to send: the part is already
    complete). A response shorter than its Content-Length raises
    IncompleteRead, which the caller retries from where it stopped. The part
    never grows past `limit` bytes: a server that announces or sends more is
    cut off with TooLarge, and the part deleted.
    """
    part, name = dest + '.part', os.path.basename(dest)
    have = os.path.getsize(part) if os.path.exists(part) else 0
    headers = {'User-Agent': 'alexnet-flowers-downloader'}
    if have:
        headers['Range'] = 'bytes=%d-' % have
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:
            return
        raise
    with response:
        resumed = (response.status == 206 and response.headers.get(
            'Content-Range', '').startswith('bytes %d-' % have))
        if have and resumed:
            mode = 'ab'
        else:
            if have:
                print('%s: the server ignored the resume request; '
                      'starting over' % name)
            have, mode = 0, 'wb'
        length = response.headers.get('Content-Length')
        length = int(length) if length and length.isdigit() else None
        total = have + length if length is not None else None
        try:
            if limit is not None and total is not None and total > limit:
                raise TooLarge(too_large(name, limit, total, part))
            received = save_body(response, part, mode, name, total, have,
                                 limit)
        except TooLarge:
            if os.path.exists(part):
                os.remove(part)
            raise
        if length is not None and received < length:
            raise http.client.IncompleteRead(b'', length - received)


def save_body(response, part, mode, name, total, have, limit):
    """Write the response to `part` (append or overwrite, as `mode` says),
    never past `limit` bytes in all; returns the bytes received."""
    progress = Progress(name, total, have)
    received = 0
    try:
        with open(part, mode) as f:
            for block in iter(lambda: response.read(CHUNK), b''):
                if limit is not None and have + received + len(block) > limit:
                    raise TooLarge(too_large(name, limit, total, part))
                f.write(block)
                received += len(block)
                progress.update(len(block))
    finally:
        progress.close()
    return received


def too_large(name, limit, announced, part):
    """The message for a server that sends more than `limit` bytes."""
    said = ('announced %d bytes, more than' % announced
            if announced is not None else 'sent no size and more than')
    return ('%s: the server %s the file\'s %d bytes; stopped and deleted '
            '%s. Is this the right address?' % (name, said, limit, part))


def download_file(url, dest, md5=None, size=None, retries=5, backoff=2.0,
                  timeout=60, check=None, max_size=None):
    """Fetch `url` to the file `dest`, checked against md5, size and check.

    Skips a `dest` that already passes the checks (see verify). Retries
    network trouble that may pass `retries` times, waiting
    backoff * 2**attempt seconds before each retry, and resumes from
    `dest + '.part'` each time. Writes no more than `size` bytes (or
    `max_size` when the size is unknown). Raises DownloadError when the
    retries are spent, at once on trouble that will not pass (see
    permanent_failure), or when the file fails its check (the part is then
    deleted).
    """
    name = os.path.basename(dest)
    if os.path.exists(dest):
        problem = verify(dest, md5, size, check)
        if problem is None:
            print('%s: already present and verified' % name)
            return dest
        print('%s: present but %s; fetching it again' % (name, problem))
    part = dest + '.part'
    limit = size if size is not None else max_size
    for attempt in range(retries + 1):
        try:
            fetch_once(url, dest, timeout, limit)
            break
        except ValueError as error:        # a malformed URL
            raise DownloadError('%s: %s' % (url, error))
        except NETWORK_ERRORS as error:
            why = permanent_failure(error)
            if why is not None:
                raise DownloadError('%s: %s (%s; not retried)'
                                    % (url, error, why))
            if attempt == retries:
                raise DownloadError('%s: %s (gave up after %d tries)'
                                    % (url, error, retries + 1))
            delay = backoff * 2 ** attempt
            print('%s: %s; retrying in %.0f s' % (name, error, delay))
            time.sleep(delay)
    problem = verify(part, md5, size, check)
    if problem is not None:
        os.remove(part)
        raise DownloadError('%s: %s; deleted %s, run again to fetch it anew'
                            % (name, problem, part))
    os.replace(part, dest)
    print('%s: verified' % name)
    return dest


# --------------------------------------------------------------- main

def fetch_data(base_url, dest, files=None, **options):
    """Download the dataset files into `dest` and unpack the archive."""
    files = DATA_FILES if files is None else files
    os.makedirs(dest, exist_ok=True)
    for name, md5 in files.items():
        download_file(base_url.rstrip('/') + '/' + name,
                      os.path.join(dest, name), md5=md5,
                      max_size=DATA_MAX_SIZES.get(name), **options)
    if ARCHIVE in files:
        print('%s: unpacking into %s' % (ARCHIVE, dest))
        count = safe_extract(os.path.join(dest, ARCHIVE), dest)
        print('%s: %d entries unpacked' % (ARCHIVE, count))


def fetch_weights(url, dest, size=None, **options):
    """Download bvlc_alexnet.npy into the folder `dest`, checking its size,
    then its content with the safe reader (weights_problem)."""
    size = WEIGHTS_SIZE if size is None else size
    os.makedirs(dest, exist_ok=True)
    download_file(url, os.path.join(dest, WEIGHTS_FILE), size=size,
                  check=weights_problem, **options)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Download Oxford 102 Flowers and the AlexNet weights, '
                    'verified, resumable.')
    parser.add_argument('--dest', default=os.path.join('data', 'oxford102'),
                        help='folder for the dataset (default: %(default)s)')
    parser.add_argument('--weights-dest', default=ROOT,
                        help='folder for bvlc_alexnet.npy (default: the '
                             'project root, beside alexnet.py)')
    parser.add_argument('--only', choices=('data', 'weights'),
                        help='fetch only the dataset or only the weights')
    parser.add_argument('--base-url', default=BASE_URL,
                        help='where the dataset files are (a mirror; '
                             'default: %(default)s)')
    parser.add_argument('--weights-url', default=WEIGHTS_URL,
                        help='where bvlc_alexnet.npy is (default: %(default)s)')
    parser.add_argument('--retries', type=int, default=5,
                        help='retries per file on network errors '
                             '(default: %(default)s)')
    parser.add_argument('--backoff', type=float, default=2.0,
                        help='seconds before the first retry, doubled for '
                             'each next one (default: %(default)s)')
    parser.add_argument('--timeout', type=float, default=60.0,
                        help='seconds without data before a request fails '
                             '(default: %(default)s)')
    args = parser.parse_args(argv)
    options = dict(retries=args.retries, backoff=args.backoff,
                   timeout=args.timeout)

    failed = False
    if args.only in (None, 'data'):
        try:
            fetch_data(args.base_url, args.dest, **options)
        except DownloadError as error:
            print('error: %s\n%s' % (error, data_help(args.base_url,
                                                       args.dest)),
                  file=sys.stderr)
            failed = True
        except (UnsafeArchiveError, OSError, tarfile.TarError) as error:
            print('error: %s' % error, file=sys.stderr)
            failed = True
    if args.only in (None, 'weights'):
        try:
            fetch_weights(args.weights_url, args.weights_dest, **options)
        except (DownloadError, OSError) as error:
            print('error: %s\n%s' % (error, WEIGHTS_HELP), file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == '__main__':
    sys.path.insert(0, ROOT)    # for weights.py, which checks the weights
    sys.exit(main())
