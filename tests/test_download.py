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
import tarfile
import threading

import pytest

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
    500 answers an error, 'drop' sends half the body and hangs up."""

    def do_GET(self):
        server = self.server
        asked = self.headers.get('Range')
        server.requests.append((self.path, asked))
        fault = server.faults.pop(0) if server.faults else None
        body = server.files.get(self.path.lstrip('/'))
        if fault == 500 or body is None:
            self.send_error(500 if fault == 500 else 404)
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
        self.send_header('Content-Length', str(len(body) - start))
        self.end_headers()
        rest = body[start:]
        self.wfile.write(rest[:len(rest) // 2] if fault == 'drop' else rest)
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
    httpd.ignore_range = False
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


def test_main_fetches_the_weights(server, tmp_path, monkeypatch):
    server.files['w.npy'] = BODY
    monkeypatch.setattr(download, 'WEIGHTS_SIZE', len(BODY))
    assert download.main(['--only', 'weights', '--weights-url',
                          server.url + 'w.npy', '--weights-dest',
                          str(tmp_path)]) == 0
    assert (tmp_path / 'bvlc_alexnet.npy').read_bytes() == BODY


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
