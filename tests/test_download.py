"""tools/download.py against a local HTTP server with planted faults.

The server runs on 127.0.0.1 in a thread of the test and serves small fake
files; every checksum here is computed from those files. No test touches the
internet.
"""
import hashlib
import http.server
import importlib.util
import io
import os
import pickle
import socket
import tarfile
import threading
import time

import numpy as np
import pytest

import weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
    'download', os.path.join(ROOT, 'tools', 'download.py'))
download = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(download)

BODY = bytes(range(256)) * 800          # 204,800 bytes: several read chunks


def md5(data):
    return hashlib.md5(data).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    """GET with Range support and the faults queued in server.faults:
    an HTTP status (500, 403, ...) answers that error, 'drop' sends half the
    body and hangs up. server.length overrides the Content-Length: a number
    (a lie), or None for none at all; server.extra is sent after the body."""

    def do_GET(self):
        server = self.server
        asked = self.headers.get('Range')
        server.requests.append((self.path, asked))
        fault = server.faults.pop(0) if server.faults else None
        body = server.files.get(self.path.lstrip('/'))
        if isinstance(fault, int) or body is None:
            self.send_error(fault if isinstance(fault, int) else 404)
            return
        start = 0
        if asked and not server.ignore_range:
            start = int(asked[len('bytes='):].rstrip('-'))
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header('Content-Range', 'bytes %d-%d/%d'
                             % (start, len(body) - 1, len(body)))
        else:
            self.send_response(200)
        length = str(len(body) - start)
        if server.length != 'true':
            length = server.length
        if length is not None:
            self.send_header('Content-Length', str(length))
        self.end_headers()
        rest = body[start:] + server.extra
        try:
            self.wfile.write(rest[:len(rest) // 2] if fault == 'drop'
                             else rest)
        except (BrokenPipeError, ConnectionResetError):
            pass            # the client stopped reading: as it should
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    """A fresh local server: set .files, .faults, .ignore_range; read
    .requests (path, Range header) and .url."""
    monkeypatch.setenv('no_proxy', '*')  # never send 127.0.0.1 to a proxy
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    httpd.files, httpd.faults, httpd.requests = {}, [], []
    httpd.ignore_range, httpd.length, httpd.extra = False, 'true', b''
    httpd.url = 'http://127.0.0.1:%d/' % httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,),
                              daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def fetch(server, tmp_path, md5sum=None, size=None, retries=3):
    """download_file of server's 'f.bin' into tmp_path, without waiting."""
    return download.download_file(server.url + 'f.bin', str(tmp_path / 'f.bin'),
                                  md5=md5sum, size=size, retries=retries,
                                  backoff=0, timeout=5)


def make_tar(members):
    """A .tgz in memory from (TarInfo, data or None) pairs."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w:gz') as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def entry(name, kind=tarfile.REGTYPE, linkname='', data=None):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, (b'data' if data is None and kind == tarfile.REGTYPE
                  else data)


def tree(folder):
    """Every path under folder, for a before/after comparison."""
    return sorted(os.path.join(top, name) for top, dirs, files in
                  os.walk(folder) for name in dirs + files)


# --------------------------------------------------------------- download

def test_clean_download(server, tmp_path):
    server.files['f.bin'] = BODY
    fetch(server, tmp_path, md5(BODY), len(BODY))
    assert (tmp_path / 'f.bin').read_bytes() == BODY
    assert not (tmp_path / 'f.bin.part').exists()
    assert server.requests == [('/f.bin', None)]


def test_resume_asks_for_the_rest_only(server, tmp_path):
    server.files['f.bin'] = BODY
    (tmp_path / 'f.bin.part').write_bytes(BODY[:70000])
    fetch(server, tmp_path, md5(BODY))
    assert server.requests == [('/f.bin', 'bytes=70000-')]
    assert (tmp_path / 'f.bin').read_bytes() == BODY


def test_server_ignoring_range_restarts_the_part(server, tmp_path, capsys):
    server.files['f.bin'] = BODY
    server.ignore_range = True
    (tmp_path / 'f.bin.part').write_bytes(b'stale bytes')
    fetch(server, tmp_path, md5(BODY))
    assert (tmp_path / 'f.bin').read_bytes() == BODY
    assert 'starting over' in capsys.readouterr().out


def test_complete_part_is_verified_without_refetching(server, tmp_path):
    server.files['f.bin'] = BODY
    (tmp_path / 'f.bin.part').write_bytes(BODY)   # interrupted before rename
    fetch(server, tmp_path, md5(BODY))
    assert (tmp_path / 'f.bin').read_bytes() == BODY   # server answered 416


def test_checksum_mismatch_deletes_the_part(server, tmp_path):
    server.files['f.bin'] = BODY[:-1] + b'X'
    with pytest.raises(download.DownloadError, match='md5.*deleted'):
        fetch(server, tmp_path, md5(BODY))
    assert os.listdir(tmp_path) == []


def test_size_mismatch_for_the_weights(server, tmp_path):
    server.files['bvlc_alexnet.npy'] = BODY
    with pytest.raises(download.DownloadError, match='size'):
        download.fetch_weights(server.url + 'bvlc_alexnet.npy', str(tmp_path),
                               size=len(BODY) + 1, retries=0, timeout=5)
    assert os.listdir(tmp_path) == []


def test_two_failures_then_success(server, tmp_path, capsys):
    server.files['f.bin'] = BODY
    server.faults = [500, 'drop']
    fetch(server, tmp_path, md5(BODY), len(BODY), retries=2)
    assert (tmp_path / 'f.bin').read_bytes() == BODY
    (_, first), (_, second), (_, third) = server.requests
    assert first is None and second is None
    assert third == 'bytes=%d-' % (len(BODY) // 2)   # resumed after the drop
    assert capsys.readouterr().out.count('retrying') == 2


def test_gives_up_after_the_retries(server, tmp_path):
    server.files['f.bin'] = BODY
    server.faults = [500, 500, 500]
    with pytest.raises(download.DownloadError, match='gave up after 2 tries'):
        fetch(server, tmp_path, md5(BODY), retries=1)
    assert len(server.requests) == 2


def test_missing_file_is_not_retried(server, tmp_path):
    with pytest.raises(download.DownloadError, match='404'):
        fetch(server, tmp_path, retries=3)
    assert len(server.requests) == 1


def test_verified_file_is_not_fetched_again(server, tmp_path, capsys):
    (tmp_path / 'f.bin').write_bytes(BODY)
    fetch(server, tmp_path, md5(BODY), len(BODY))
    assert server.requests == []
    assert 'already present and verified' in capsys.readouterr().out


def test_present_but_wrong_file_is_fetched_again(server, tmp_path):
    server.files['f.bin'] = BODY
    (tmp_path / 'f.bin').write_bytes(b'truncated')
    fetch(server, tmp_path, md5(BODY))
    assert (tmp_path / 'f.bin').read_bytes() == BODY


# --------------------------------------------------------------- main

def test_main_fetches_and_unpacks_the_dataset(server, tmp_path, monkeypatch):
    archive = make_tar([entry('jpg', tarfile.DIRTYPE),
                        entry('jpg/image_00001.jpg', data=b'jpeg bytes')])
    server.files = {'102flowers.tgz': archive, 'imagelabels.mat': b'labels',
                    'setid.mat': b'setid'}
    monkeypatch.setattr(download, 'DATA_FILES', {
        name: md5(data) for name, data in server.files.items()})
    dest = tmp_path / 'data'
    assert download.main(['--only', 'data', '--dest', str(dest), '--base-url',
                          server.url, '--retries', '0']) == 0
    assert (dest / 'jpg' / 'image_00001.jpg').read_bytes() == b'jpeg bytes'
    assert sorted(os.listdir(dest)) == ['102flowers.tgz', 'imagelabels.mat',
                                        'jpg', 'setid.mat']


SMALL_SHAPES = {'conv1': {'weights': (3, 3, 3, 4), 'biases': (4,)},
                'fc8': {'weights': (4, 2), 'biases': (2,)}}


def small_weights_file(tmp_path, value=0.5):
    """The bytes of a Toronto-layout .npy shaped like SMALL_SHAPES."""
    layers = {name: {part: np.full(shape, value, np.float32)
                     for part, shape in parts.items()}
              for name, parts in SMALL_SHAPES.items()}
    path = tmp_path / 'made.npy'
    weights.save_toronto_npy(layers, path)
    data = path.read_bytes()
    path.unlink()
    return data


@pytest.fixture
def small_alexnet(monkeypatch):
    """download.py checks the weights against weights.ALEXNET_SHAPES: make
    that the small model, so that a test file of a few kB passes."""
    monkeypatch.setattr(weights, 'ALEXNET_SHAPES', SMALL_SHAPES)


def test_main_fetches_the_weights(server, tmp_path, monkeypatch,
                                  small_alexnet):
    data = small_weights_file(tmp_path)
    server.files['w.npy'] = data
    monkeypatch.setattr(download, 'WEIGHTS_SIZE', len(data))
    assert download.main(['--only', 'weights', '--weights-url',
                          server.url + 'w.npy', '--weights-dest',
                          str(tmp_path)]) == 0
    assert (tmp_path / 'bvlc_alexnet.npy').read_bytes() == data


def test_main_explains_what_to_do_without_weights(server, tmp_path, capsys):
    assert download.main(['--only', 'weights', '--weights-url',
                          server.url + 'gone.npy', '--weights-dest',
                          str(tmp_path), '--retries', '0']) == 1
    err = capsys.readouterr().err
    assert '404' in err and 'bvlc_alexnet.npy.md' in err
    assert 'tools/convert_weights.py bvlc_alexnet.caffemodel' in err


# --------------------------------------------------------------- extraction

HOSTILE = {
    'absolute path': lambda outside: [entry(os.path.join(outside, 'evil'))],
    'dot-dot': lambda outside: [entry('jpg/../../outside/evil')],
    'symlink out': lambda outside: [entry('jpg', tarfile.SYMTYPE, outside),
                                    entry('jpg/evil')],
    'relative symlink out': lambda outside: [
        entry('link', tarfile.SYMTYPE, '../outside'), entry('link/evil')],
    'hard link out': lambda outside: [
        entry('evil', tarfile.LNKTYPE, '../outside/target')],
    'device': lambda outside: [entry('dev', tarfile.CHRTYPE)],
    # Each link looks harmless alone; together 'up' points above dest.
    'symlink chain': lambda outside: [
        entry('here', tarfile.SYMTYPE, '.'),
        entry('up', tarfile.SYMTYPE, 'here/..'),
        entry('up/outside/evil')],
}


@pytest.mark.parametrize('case', sorted(HOSTILE))
def test_hostile_archive_is_refused(case, tmp_path):
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'target').write_bytes(b'keep me')
    archive = tmp_path / 'evil.tgz'
    archive.write_bytes(make_tar(HOSTILE[case](str(outside))))
    dest = tmp_path / 'dest'
    before = tree(tmp_path)
    with pytest.raises(download.UnsafeArchiveError, match='refusing'):
        download.safe_extract(str(archive), str(dest))
    written = sorted(set(tree(tmp_path)) - set(before))
    assert all(path.startswith(str(dest)) for path in written), written
    assert (outside / 'target').read_bytes() == b'keep me'
    if case != 'symlink chain':   # refused before anything is written
        assert written == [str(dest)]


def test_safe_extract_keeps_links_inside(tmp_path):
    archive = tmp_path / 'ok.tgz'
    archive.write_bytes(make_tar([
        entry('jpg', tarfile.DIRTYPE),
        entry('jpg/image_00001.jpg', data=b'one'),
        entry('jpg/same.jpg', tarfile.SYMTYPE, 'image_00001.jpg')]))
    dest = tmp_path / 'dest'
    assert download.safe_extract(str(archive), str(dest)) == 3
    assert (dest / 'jpg' / 'same.jpg').read_bytes() == b'one'


# --------------------------------------------------------------- weights
# The size alone is no check: the weights are read with the safe reader.

class RunsShell:
    """Unpickling this calls os.system(command)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def padded_hostile_npy(tmp_path, size, marker):
    """An .npy whose pickle runs `touch marker`, padded to `size` bytes
    (np.load ignores what follows the pickle)."""
    path = tmp_path / 'hostile.npy'
    np.save(path, {'conv1': [RunsShell('touch %s' % marker), None]},
            allow_pickle=True)
    data = path.read_bytes()
    path.unlink()
    assert len(data) < size
    return data + b'\0' * (size - len(data))


@pytest.mark.parametrize('kind', ['hostile', 'nan'])
def test_weights_of_the_right_size_but_unusable_are_deleted(
        server, tmp_path, monkeypatch, small_alexnet, kind):
    marker = tmp_path / 'pwned'
    genuine = small_weights_file(tmp_path)
    if kind == 'hostile':
        data = padded_hostile_npy(tmp_path, len(genuine), marker)
        words = 'refusing to load'
    else:
        data = small_weights_file(tmp_path, value=np.nan)
        words = "layer 'conv1': weights hold 108 NaN"
    assert len(data) == len(genuine)
    server.files['w.npy'] = data
    dest = tmp_path / 'weights'
    with pytest.raises(download.DownloadError) as error:
        download.fetch_weights(server.url + 'w.npy', str(dest),
                               size=len(data), retries=0, timeout=5)
    assert 'not usable weights' in str(error.value)
    assert words in str(error.value)
    assert os.listdir(dest) == []            # neither the file nor the part
    assert not marker.exists()


def test_present_hostile_weights_are_fetched_again(server, tmp_path,
                                                   small_alexnet, capsys):
    genuine = small_weights_file(tmp_path)
    server.files['w.npy'] = genuine
    marker = tmp_path / 'pwned'
    (tmp_path / 'bvlc_alexnet.npy').write_bytes(
        padded_hostile_npy(tmp_path, len(genuine), marker))
    download.fetch_weights(server.url + 'w.npy', str(tmp_path),
                           size=len(genuine), retries=0, timeout=5)
    assert 'present but not usable weights' in capsys.readouterr().out
    assert (tmp_path / 'bvlc_alexnet.npy').read_bytes() == genuine
    assert not marker.exists()


# --------------------------------------------------------------- never more

@pytest.fixture
def largest_part(monkeypatch):
    """Records the largest size any .part file reached while written."""
    sizes = [0]
    real_open = open

    class Counting(object):
        def __init__(self, f):
            self.f = f

        def write(self, data):
            written = self.f.write(data)
            sizes[0] = max(sizes[0], self.f.tell())
            return written

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def counting_open(path, mode='r', *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return Counting(f) if str(path).endswith('.part') else f

    monkeypatch.setattr(download, 'open', counting_open, raising=False)
    return sizes


@pytest.mark.parametrize('length', [None, 10 * len(BODY)])
def test_server_sending_too_much_is_cut_off(server, tmp_path, largest_part,
                                           length):
    """No Content-Length, or one larger than the file: stopped at the
    file's size, the part deleted, not retried."""
    server.files['f.bin'] = BODY
    server.length = length
    server.extra = bytes(3 * len(BODY))        # 600 kB more than promised
    with pytest.raises(download.DownloadError) as error:
        fetch(server, tmp_path, size=len(BODY), retries=3)
    said = 'sent no size' if length is None else 'announced %d' % length
    assert said in str(error.value) and 'deleted' in str(error.value)
    assert largest_part[0] <= len(BODY)
    assert os.listdir(tmp_path) == []
    assert len(server.requests) == 1


def test_a_resumed_part_is_not_grown_past_the_size(server, tmp_path,
                                                   largest_part):
    server.files['f.bin'] = BODY
    server.ignore_range = True                 # sends the whole file again
    server.length = None
    (tmp_path / 'f.bin.part').write_bytes(BODY[:1000])
    server.extra = b'x'
    with pytest.raises(download.DownloadError, match='sent no size'):
        fetch(server, tmp_path, size=len(BODY))
    assert largest_part[0] <= len(BODY)


def test_dataset_file_of_unknown_size_has_a_ceiling(server, tmp_path,
                                                    monkeypatch):
    server.files = {'setid.mat': BODY}
    server.length = None
    monkeypatch.setattr(download, 'DATA_MAX_SIZES', {'setid.mat': 1000})
    with pytest.raises(download.DownloadError, match="the file's 1000 bytes"):
        download.fetch_data(server.url, str(tmp_path),
                            {'setid.mat': md5(BODY)}, retries=0, timeout=5)
    assert os.listdir(tmp_path) == []


def test_a_short_lying_length_fails_the_check(server, tmp_path):
    server.files['f.bin'] = BODY
    server.length = 1000                       # the rest is never read
    with pytest.raises(download.DownloadError, match='size 1000 bytes'):
        fetch(server, tmp_path, size=len(BODY))
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------- fail fast

def free_port():
    """A loopback port where nothing listens (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


@pytest.fixture
def no_resolver(monkeypatch):
    """Name lookups fail as they do offline; no real lookup is made."""
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN,
                              'Temporary failure in name resolution')
    monkeypatch.setattr(socket, 'getaddrinfo', fail)
    monkeypatch.setenv('no_proxy', '*')


def timed_main(argv):
    start = time.monotonic()
    code = download.main(argv + ['--retries', '5', '--backoff', '2'])
    return code, time.monotonic() - start


def test_refused_connection_fails_at_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('no_proxy', '*')
    base = 'http://127.0.0.1:%d/flowers/' % free_port()
    code, seconds = timed_main(['--only', 'data', '--dest', str(tmp_path),
                                '--base-url', base])
    err = capsys.readouterr().err
    assert code == 1 and seconds < 2           # retried, it would take 62 s
    assert 'not retried' in err and 'retrying' not in err
    assert '--base-url URL' in err              # a mirror
    for name in download.DATA_FILES:            # or by hand, and where to
        assert base + name in err
    assert 'put them in %s' % tmp_path in err
    assert os.path.join(str(tmp_path), 'jpg') in err


@pytest.mark.parametrize('only', ['data', 'weights'])
def test_unresolvable_host_fails_at_once(tmp_path, no_resolver, capsys,
                                         only):
    code, seconds = timed_main([
        '--only', only, '--dest', str(tmp_path), '--weights-dest',
        str(tmp_path), '--base-url', 'http://flowers.example/',
        '--weights-url', 'http://weights.example/bvlc_alexnet.npy'])
    err = capsys.readouterr().err
    assert code == 1 and seconds < 2
    assert 'does not resolve' in err and 'not retried' in err
    if only == 'data':
        assert 'http://flowers.example/102flowers.tgz' in err
    else:
        assert '--weights-url URL' in err and 'beside alexnet.py' in err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('status', [403, 404, 410])
def test_client_errors_are_not_retried(server, tmp_path, status):
    server.files['f.bin'] = BODY
    server.faults = [status] * 3
    with pytest.raises(download.DownloadError, match='not retried'):
        fetch(server, tmp_path, retries=3)
    assert len(server.requests) == 1


def test_a_server_that_never_answers_is_retried(tmp_path, monkeypatch,
                                                capsys):
    """A timeout may pass: it keeps its retries."""
    monkeypatch.setenv('no_proxy', '*')
    with socket.socket() as silent:            # accepts, never answers
        silent.bind(('127.0.0.1', 0))
        silent.listen(5)
        url = 'http://127.0.0.1:%d/f.bin' % silent.getsockname()[1]
        with pytest.raises(download.DownloadError,
                           match='gave up after 2 tries'):
            download.download_file(url, str(tmp_path / 'f.bin'), retries=1,
                                   backoff=0, timeout=0.3)
    assert capsys.readouterr().out.count('retrying') == 1


def test_malformed_address_is_a_message(tmp_path):
    with pytest.raises(download.DownloadError, match='unknown url type'):
        download.download_file('flowers.tgz', str(tmp_path / 'f'))
