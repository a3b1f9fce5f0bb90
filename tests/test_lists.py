"""The shipped image lists are exactly what tools/make_lists.py writes from
the official imagelabels.mat and setid.mat, and they are right.

The official files are looked up in $FLOWERS_DIR, else in
<repo>/../shared/data/oxford102; the tests skip where they are absent.
"""
import collections
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, 'tools', 'make_lists.py')
FLOWERS = os.environ.get('FLOWERS_DIR') or os.path.join(
    ROOT, os.pardir, 'shared', 'data', 'oxford102')
LISTS = {'trainfile.txt': 'trnid', 'valtestfile.txt': 'valid',
         'testfile.txt': 'tstid'}
LINE = re.compile(r'jpg/image_(\d{5})\.jpg (\d+)\n\Z')

pytestmark = pytest.mark.skipif(
    not all(os.path.isfile(os.path.join(FLOWERS, name))
            for name in ('imagelabels.mat', 'setid.mat')),
    reason='official imagelabels.mat and setid.mat not found in %s '
           '(set FLOWERS_DIR to the folder that has them)' % FLOWERS)


def make_lists(out, *options, check=True):
    """Run the tool on the official files, writing into `out`."""
    return subprocess.run([sys.executable, TOOL, '--mat-dir', FLOWERS,
                           '--out', str(out)] + list(options),
                          capture_output=True, text=True, check=check)


def read_list(path):
    """[(image number, label)] of a list file, checking every line's form."""
    with open(path, newline='') as f:
        lines = f.readlines()
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed) if not m][:3]
    return [(int(m.group(1)), int(m.group(2))) for m in parsed]


@pytest.fixture(scope='module')
def official():
    """(labels, splits) straight from the .mat files."""
    loadmat = pytest.importorskip('scipy.io').loadmat
    labels = loadmat(os.path.join(FLOWERS, 'imagelabels.mat'))['labels']
    setid = loadmat(os.path.join(FLOWERS, 'setid.mat'))
    return labels.ravel(), {name: setid[name].ravel() for name in LISTS.values()}


@pytest.fixture(scope='module')
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp('lists')
    make_lists(out)
    return out


@pytest.mark.parametrize('name', sorted(LISTS))
def test_shipped_list_is_what_the_tool_writes(name, generated):
    with open(os.path.join(ROOT, name), 'rb') as shipped:
        assert shipped.read() == (generated / name).read_bytes()


@pytest.mark.parametrize('name, count', [('trainfile.txt', 1020),
                                         ('valtestfile.txt', 1020),
                                         ('testfile.txt', 6149)])
def test_list_matches_the_official_split(name, count, official):
    labels, splits = official
    entries = read_list(os.path.join(ROOT, name))
    images = [image for image, _ in entries]
    assert len(entries) == count
    assert images == sorted(set(splits[LISTS[name]]))      # sorted, unique
    assert all(label == labels[image - 1] - 1 for image, label in entries)
    if name != 'testfile.txt':
        per_class = collections.Counter(label for _, label in entries)
        assert per_class == {label: 10 for label in range(102)}


def test_splits_are_disjoint_and_cover_the_dataset():
    images = [set(image for image, _ in read_list(os.path.join(ROOT, name)))
              for name in LISTS]
    assert sum(map(len, images)) == len(set.union(*images)) == 8189


def test_split_options(tmp_path, official):
    _, splits = official
    make_lists(tmp_path, '--train', 'trnid,tstid', '--val', 'valid',
               '--test', 'valid')
    train = [image for image, _ in read_list(tmp_path / 'trainfile.txt')]
    assert train == sorted(set(splits['trnid']) | set(splits['tstid']))
    assert len(train) == 7169
    assert ((tmp_path / 'testfile.txt').read_bytes()
            == (tmp_path / 'valtestfile.txt').read_bytes())
    assert (tmp_path / 'class_names.txt').exists()   # the folder stands alone


def test_unknown_split_is_an_error(tmp_path):
    result = make_lists(tmp_path, '--train', 'trnid,training', check=False)
    assert result.returncode == 2
    assert "unknown split 'training'" in result.stderr
    assert os.listdir(tmp_path) == []


def test_missing_mat_file_is_an_error(tmp_path):
    result = subprocess.run([sys.executable, TOOL, '--mat-dir', str(tmp_path),
                             '--out', str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert 'imagelabels.mat not found' in result.stderr
    assert 'tools/download.py' in result.stderr


def test_class_names():
    with open(os.path.join(ROOT, 'class_names.txt'), 'rb') as f:
        shipped = f.read()
    assert len(shipped.decode('ascii').splitlines()) == 102
    assert shipped.endswith(b'\n') and b'\r' not in shipped
    shared = os.path.join(FLOWERS, 'class_names.txt')
    if os.path.exists(shared):
        with open(shared, 'rb') as f:
            assert shipped == f.read()
