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
   (md5 for the dataset files, the size for the weights, whose md5 is not
   published) is renamed to ``NAME``. A half-written ``NAME`` never exists.
3. An interrupted download resumes: the next request asks for the missing
   bytes only (HTTP ``Range: bytes=N-``). A server that ignores Range answers
   ``200`` with the whole file; we then start the part over.
4. Network errors (refused or dropped connections, timeouts, HTTP 5xx) are
   retried with exponential back-off: wait ``backoff``, ``2*backoff``,
   ``4*backoff`` ... seconds. HTTP 4xx (a missing file) is not retried.
5. A file that fails its check is deleted, with a message: resuming from
   corrupt bytes would only fail again.

Unpacking a downloaded archive is a classic hole: a member named
``/etc/passwd`` or ``../../.bashrc``, or a symlink pointing out of the
folder, writes wherever the archive's author chose. ``safe_extract`` refuses
such members before anything is written.

Standard library only; tqdm, when installed, draws the progress bars.
"""
import argparse
import hashlib
import http.client
import ntpath
import os
import posixpath
import socket
import sys
import tarfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_URL = 'https://www.robots.ox.ac.uk/~vgg/data/flowers/102/'
#: the dataset files and their published md5s
DATA_FILES = {
    '102flowers.tgz': '52808999861908f626f3c1f4e79d11fa',
    'imagelabels.mat': 'e0620be6f572b9609742df49c70aed4d',
    'setid.mat': 'a5357ecc9cb78c4bef273ce3793fc85c',
}
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


class DownloadError(Exception):
    """A file could not be fetched or failed its check."""


class UnsafeArchiveError(Exception):
    """An archive member would be written outside the destination."""


# --------------------------------------------------------------- checking

def md5sum(path):
    """The md5 of a file as 32 hex digits, read in chunks (files are big)."""
    digest = hashlib.md5()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def verify(path, md5=None, size=None):
    """None when the file matches the expected size and md5, else the problem.

    The size is checked first: it is free, and a wrong size makes the md5
    pointless.
    """
    actual = os.path.getsize(path)
    if size is not None and actual != size:
        return 'size %d bytes, expected %d' % (actual, size)
    if md5 is not None:
        actual = md5sum(path)
        if actual != md5:
            return 'md5 %s, expected %s' % (actual, md5)
    return None


# --------------------------------------------------------------- progress

def human(n):
    """1234567 -> '1.2 MB'."""
    for unit in ('B', 'kB', 'MB', 'GB'):
        if n < 1000 or unit == 'GB':
            return ('%d %s' if unit == 'B' else '%.1f %s') % (n, unit)
        n /= 1000.0


class Progress(object):
    """Bytes done, rate and time left for one file.

    A tqdm bar on a terminal; otherwise (tqdm absent, output to a log file)
    a plain line every `every` seconds and one at the end.
    """

    def __init__(self, name, total, done=0, every=10.0):
        self.name, self.total, self.done, self.every = name, total, done, every
        self.start = self.last = time.time()
        self.start_done = done
        self.bar = None
        if sys.stdout.isatty():
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, initial=done, desc=name, unit='B',
                                unit_scale=True, unit_divisor=1000)
            except ImportError:
                pass

    def update(self, n):
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif time.time() - self.last >= self.every:
            self.last = time.time()
            print(self.line(), flush=True)

    def line(self, final=False):
        elapsed = max(time.time() - self.start, 1e-6)
        rate = (self.done - self.start_done) / elapsed
        text = '%s: %s' % (self.name, human(self.done))
        if self.total:
            text += ' of %s (%d%%)' % (human(self.total),
                                       100 * self.done // self.total)
        text += ', %s/s' % human(rate)
        if final:
            text += ', %.0f s' % elapsed
        elif self.total and rate > 0:
            text += ', %.0f s left' % ((self.total - self.done) / rate)
        return text

    def close(self):
        if self.bar is not None:
            self.bar.close()
        else:
            print(self.line(final=True), flush=True)


# --------------------------------------------------------------- download

#: Network trouble that may pass: refused, reset or dropped connections,
#: timeouts, a response cut short, HTTP errors (see is_retryable).
NETWORK_ERRORS = (urllib.error.URLError, ConnectionError, TimeoutError,
                  socket.timeout, http.client.HTTPException)


def is_retryable(error):
    """False for HTTP errors that will not pass by waiting, such as 404."""
    if isinstance(error, urllib.error.HTTPError):
        return error.code >= 500 or error.code in (408, 429)
    return True


def fetch_once(url, dest, timeout=60):
    """One HTTP request that appends the missing bytes of `url` to dest.part.

    With a part already on disk, ask for the rest only (``Range``). The
    server answers 206 (partial content: append), 200 (it ignores Range:
    start the part over) or 416 (nothing left to send: the part is already
    complete). A response shorter than its Content-Length raises
    IncompleteRead, which the caller retries from where it stopped.
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
        length = int(length) if length is not None else None
        total = have + length if length is not None else None
        progress = Progress(name, total, have)
        received = 0
        with open(part, mode) as f:
            try:
                for block in iter(lambda: response.read(CHUNK), b''):
                    f.write(block)
                    received += len(block)
                    progress.update(len(block))
            finally:
                progress.close()
        if length is not None and received < length:
            raise http.client.IncompleteRead(b'', length - received)


def download_file(url, dest, md5=None, size=None, retries=5, backoff=2.0,
                  timeout=60):
    """Fetch `url` to the file `dest`, checked against md5 and/or size.

    Skips a `dest` that already passes the check. Retries network errors
    `retries` times, waiting backoff * 2**attempt seconds before each retry,
    and resumes from `dest + '.part'` each time. Raises DownloadError when
    the retries are spent, on HTTP 4xx, or when the file fails its check (the
    part is then deleted).
    """
    name = os.path.basename(dest)
    if os.path.exists(dest):
        problem = verify(dest, md5, size)
        if problem is None:
            print('%s: already present and verified' % name)
            return dest
        print('%s: present but %s; fetching it again' % (name, problem))
    part = dest + '.part'
    for attempt in range(retries + 1):
        try:
            fetch_once(url, dest, timeout)
            break
        except NETWORK_ERRORS as error:
            if not is_retryable(error):
                raise DownloadError('%s: %s' % (url, error))
            if attempt == retries:
                raise DownloadError('%s: %s (gave up after %d tries)'
                                    % (url, error, retries + 1))
            delay = backoff * 2 ** attempt
            print('%s: %s; retrying in %.0f s' % (name, error, delay))
            time.sleep(delay)
    problem = verify(part, md5, size)
    if problem is not None:
        os.remove(part)
        raise DownloadError('%s: %s; deleted %s, run again to fetch it anew'
                            % (name, problem, part))
    os.replace(part, dest)
    print('%s: verified' % name)
    return dest


# --------------------------------------------------------------- extraction

def is_within(path, folder):
    """True when `path` is `folder` or inside it (both absolute, resolved)."""
    return os.path.commonpath([path, folder]) == folder


def member_problem(member, dest):
    """Why `member` must not be extracted into `dest` (resolved), or None.

    Checked: absolute paths, '..' components, anything but plain files,
    folders and links (devices, FIFOs), and where the member and a link's
    target end up once the links already on disk are followed
    (os.path.realpath), which catches a member written through an earlier
    symlink.
    """
    name = member.name
    if name.startswith(('/', '\\')) or ntpath.splitdrive(name)[0]:
        return 'absolute path'
    if '..' in name.replace('\\', '/').split('/'):
        return "'..' in the path"
    if not (member.isfile() or member.isdir() or member.issym()
            or member.islnk()):
        return 'not a file, folder or link (a device or FIFO)'
    target = os.path.realpath(os.path.join(dest, name))
    if not is_within(target, dest):
        return 'written outside the destination (through a link)'
    if member.issym() or member.islnk():
        if os.path.isabs(member.linkname):
            return 'link to an absolute path %s' % member.linkname
        # A symlink's target is relative to its folder; a hard link's to the
        # archive's root.
        base = posixpath.dirname(name) if member.issym() else ''
        linked = os.path.realpath(os.path.join(dest, base, member.linkname))
        if not is_within(linked, dest):
            return 'link to %s, outside the destination' % member.linkname
    return None


def safe_extract(archive, dest):
    """Unpack the tar `archive` into `dest`, refusing hostile members.

    All members are checked before the first is written, so a hostile archive
    leaves nothing behind; each is checked again just before it is written,
    when the links extracted before it exist on disk. Where Python has
    tarfile's 'data' filter (3.8.17+, 3.11.4+), it runs as a second guard.
    Raises UnsafeArchiveError naming the member.
    """
    os.makedirs(dest, exist_ok=True)
    dest = os.path.realpath(dest)
    options = {'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for check_only in (True, False):
            for member in members:
                problem = member_problem(member, dest)
                if problem is not None:
                    raise UnsafeArchiveError('%s: refusing member %r: %s'
                                             % (archive, member.name, problem))
                if not check_only:
                    tar.extract(member, dest, **options)
    return len(members)


# --------------------------------------------------------------- main

def fetch_data(base_url, dest, files=None, **options):
    """Download the dataset files into `dest` and unpack the archive."""
    files = DATA_FILES if files is None else files
    os.makedirs(dest, exist_ok=True)
    for name, md5 in files.items():
        download_file(base_url.rstrip('/') + '/' + name,
                      os.path.join(dest, name), md5=md5, **options)
    if ARCHIVE in files:
        print('%s: unpacking into %s' % (ARCHIVE, dest))
        count = safe_extract(os.path.join(dest, ARCHIVE), dest)
        print('%s: %d entries unpacked' % (ARCHIVE, count))


def fetch_weights(url, dest, size=None, **options):
    """Download bvlc_alexnet.npy into the folder `dest`, checking its size."""
    size = WEIGHTS_SIZE if size is None else size
    os.makedirs(dest, exist_ok=True)
    download_file(url, os.path.join(dest, WEIGHTS_FILE), size=size, **options)


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
        except (DownloadError, UnsafeArchiveError, OSError,
                tarfile.TarError) as error:
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
    sys.exit(main())
