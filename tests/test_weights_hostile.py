"""Hostile weights files that would make numpy read memory: refused cleanly.

The files here are written by hand, one pickle instruction at a time, the
way an attacker would: each one passes a check that only looks at the
*names* a pickle calls (they are all numpy's own functions) and instead
forges the *arguments*, so that numpy reads 8 bytes of the file as the
address of a Python object.  Plain numpy follows that address and the
process dies (see the control test).

Every file is read by ``weights.read_weights`` in a child process: a crash
there fails the test (a negative return code) instead of killing pytest.
"""
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from numpy.lib import format as npy_format

import weights

try:
    import resource
except ImportError:         # Windows: no core dumps to switch off
    resource = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# -- a tiny pickle assembler -------------------------------------------------

PROTO, STOP, REDUCE, BUILD, POP = b'\x80\x03', b'.', b'R', b'b', b'0'
NONE, TRUE, FALSE = b'N', b'\x88', b'\x89'
EMPTY_DICT, EMPTY_LIST, MARK, APPENDS, SETITEM = b'}', b']', b'(', b'e', b's'

# 8 bytes that numpy would take for the address of a Python object: 0x10,
# which no process maps, so following it is a certain crash.
ADDRESS = struct.pack('<Q', 0x10)


def glob(module, name):
    return b'c%s\n%s\n' % (module.encode(), name.encode())


def tup(*items):
    return MARK + b''.join(items) + b't'


def text(value):
    data = value.encode()
    return b'X' + struct.pack('<I', len(data)) + data


def raw(data):
    return b'B' + struct.pack('<I', len(data)) + data


def num(value):
    return b'J' + struct.pack('<i', value)


def put(index):
    return b'q' + bytes([index])


def get(index):
    return b'h' + bytes([index])


def call(function, *args):
    return function + tup(*args) + REDUCE


def dtype(name, byteorder='|', flags=0, names=NONE, fields=NONE, size=-1,
          align=-1, build=True):
    """numpy.dtype(name, False, True), then BUILD with a state of our
    choosing (numpy writes flags 63 for objects, 0 for numbers)."""
    made = call(glob('numpy', 'dtype'), text(name), FALSE, TRUE)
    state = tup(num(3), text(byteorder), NONE, names, fields, num(size),
                num(align), num(flags))
    return made + state + BUILD if build else made


OBJECT = dtype('O8', flags=63)           # exactly what numpy writes
FLOAT = dtype('f8', '<')


def empty_array(core='numpy._core'):
    return call(glob(core + '.multiarray', '_reconstruct'),
                glob('numpy', 'ndarray'), tup(num(0)), raw(b'b'))


def array(dtype_ops, data, count=1, core='numpy._core'):
    """_reconstruct, then BUILD (1, (count,), dtype, False, data)."""
    return empty_array(core) + tup(num(1), tup(num(count)), dtype_ops, FALSE,
                                   data) + BUILD


def as_layer(hostile):
    """{'conv1': [hostile, biases]}: where a genuine file has its arrays."""
    biases = array(dtype('f4', '<'), raw(b'\0' * 4))
    return (PROTO + EMPTY_DICT + text('conv1') + EMPTY_LIST + MARK + hostile
            + biases + APPENDS + SETITEM + STOP)


def top_level(hostile):
    """The hostile object as the whole file (np.save wraps one this way)."""
    return PROTO + hostile + STOP


def write_npy(path, payload):
    with open(path, 'wb') as f:
        npy_format.write_array_header_1_0(
            f, {'descr': '|O', 'fortran_order': False, 'shape': ()})
        f.write(payload)


# -- the hostile files -------------------------------------------------------

STRUCT_FIELDS = EMPTY_DICT + text('a') + tup(dtype('O8', flags=63),
                                             num(0)) + SETITEM

HOSTILE = {
    # numpy.ndarray(shape, dtype, buffer): an array over the file's bytes
    'ndarray(object dtype, buffer)': (
        call(glob('numpy', 'ndarray'), tup(num(1)), OBJECT, raw(ADDRESS)),
        'numpy.ndarray'),
    'ndarray(float dtype, buffer, offset, strides)': (
        call(glob('numpy', 'ndarray'), tup(num(1)), FLOAT, raw(ADDRESS),
             num(1 << 30), tup(num(8))),
        'numpy.ndarray'),
    # the usual _reconstruct + BUILD, but with object dtype and raw bytes
    'object array filled from bytes': (
        array(OBJECT, raw(ADDRESS)), 'never from raw bytes'),
    'object array filled from bytes, numpy 1 names': (
        array(OBJECT, raw(ADDRESS), core='numpy.core'),
        'never from raw bytes'),
    # the object dtype with its "holds objects" flags forged away
    'object dtype with flags cleared': (
        array(dtype('O8', flags=0), raw(ADDRESS)), 'forged dtype state'),
    'float dtype claiming object flags': (
        array(dtype('f8', '<', flags=63), raw(ADDRESS)),
        'forged dtype state'),
    # a structured dtype whose field is an object, set through the state
    'structured dtype named V8': (
        array(dtype('V8', names=tup(text('a')), fields=STRUCT_FIELDS, size=8,
                    align=1, flags=27), raw(ADDRESS)), "a dtype 'V8'"),
    'float dtype given an object field by its state': (
        array(dtype('f8', '<', names=tup(text('a')), fields=STRUCT_FIELDS,
                    size=8, align=1, flags=0), raw(ADDRESS)),
        'forged dtype state'),
    # object dtype handed to the other functions that read raw bytes
    'frombuffer with object dtype': (
        call(glob('numpy._core.numeric', '_frombuffer'), raw(ADDRESS),
             OBJECT, tup(num(1)), text('C')), 'raw bytes as dtype O8'),
    'scalar with object dtype': (
        call(glob('numpy.core.multiarray', 'scalar'), OBJECT, raw(ADDRESS)),
        'raw bytes as dtype O8'),
    # the dtype is used first and forged afterwards (through the memo)
    'dtype forged after use': (
        dtype('f8', '<', build=False) + put(0)
        + array(get(0), raw(ADDRESS))
        + get(0) + tup(num(3), text('|'), NONE, NONE, NONE, num(-1), num(-1),
                       num(63)) + BUILD + POP,
        'forged dtype state'),
    # a genuine float array, refilled as an object array from bytes
    'array refilled': (
        array(FLOAT, raw(ADDRESS)) + put(1) + get(1)
        + tup(num(1), tup(num(1)), OBJECT, FALSE, raw(ADDRESS)) + BUILD
        + POP, 'refills'),
    'frombuffer view refilled': (
        call(glob('numpy._core.numeric', '_frombuffer'), raw(ADDRESS),
             FLOAT, tup(num(1)), text('C'))
        + tup(num(1), tup(num(1)), OBJECT, FALSE, raw(ADDRESS)) + BUILD,
        'refills'),
    # _reconstruct with a size of its own, and a start typecode not 'b'
    '_reconstruct of a big array': (
        call(glob('numpy._core.multiarray', '_reconstruct'),
             glob('numpy', 'ndarray'), tup(num(1 << 30)), raw(b'b')),
        '_reconstruct'),
    # dtype classes and attribute paths are globals the table lacks
    'a dtype class': (glob('numpy.dtypes', 'ObjectDType'), 'ObjectDType'),
    'attribute path to the dtype class': (
        glob('numpy', 'dtype.__class__'), 'numpy.dtype.__class__'),
    'ndarray through NEWOBJ': (
        glob('numpy', 'ndarray') + tup(tup(num(1)), OBJECT, raw(ADDRESS))
        + b'\x81', 'damaged'),
    # the dtype's state set on something that is not a dtype or an array
    'state set on a list': (EMPTY_LIST + EMPTY_DICT + BUILD,
                            'sets the state of a list'),
    # numpy's shared float64 (copy=False) given a new byte order, then a
    # refused global: whatever the verdict, float64 must stay as it was
    'shared dtype restated': (
        call(glob('numpy', 'dtype'), text('f8'), FALSE, FALSE)
        + tup(num(3), text('>'), NONE, NONE, NONE, num(-1), num(-1), num(0))
        + BUILD + POP + glob('os', 'system'), 'os.system'),
    # hostile arrays nested inside genuine containers
    'nested in an object array in a list': (
        EMPTY_LIST + MARK + array(OBJECT, EMPTY_LIST + MARK
                                  + array(dtype('O8', flags=0), raw(ADDRESS))
                                  + APPENDS)
        + APPENDS, 'forged dtype state'),
}

for _name in ['f4,O8', '(2,)O8', 'V16', 'S8', 'U2', 'M8', 'c16', 'f16',
              'i4\n', '|O']:
    HOSTILE['dtype named %r' % _name] = (
        array(dtype(_name), raw(ADDRESS)), 'a dtype')

# One child process reads every hostile file and reports on each, one JSON
# line at a time (flushed), so that a crash shows which file caused it.
READER = """
import json, sys
import numpy as np
import weights
for path in sys.argv[1:]:
    try:
        weights.read_weights(path)
        verdict = ['LOADED', '']
    except weights.WeightsFileError as error:
        verdict = ['REFUSED', str(error)]
    print(json.dumps([path] + verdict), flush=True)
print(json.dumps(['float64', np.dtype(np.float64).str,
                  str(np.dtype(np.float64).flags)]))
"""
PLACES = {'as_layer': as_layer, 'top_level': top_level}


def _no_core_dump():
    """A crashing child must not leave a core file behind."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_child(code, *paths):
    return subprocess.run(
        [sys.executable, '-c', code] + [str(p) for p in paths], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True, timeout=120,
        preexec_fn=_no_core_dump if resource else None)


@pytest.fixture(scope='module')
def verdicts(tmp_path_factory):
    """{(case, place): (path, verdict, message)} from one child process,
    plus the child's result under the key 'child'."""
    folder = tmp_path_factory.mktemp('hostile')
    files = {}
    for number, case in enumerate(sorted(HOSTILE)):
        for place, wrap in PLACES.items():
            path = str(folder / ('%02d-%s.npy' % (number, place)))
            write_npy(path, wrap(HOSTILE[case][0]))
            files[path] = (case, place)
    child = run_child(READER, *files)
    found = {'child': child}
    for line in child.stdout.splitlines():
        path, verdict, message = json.loads(line)
        found[files.get(path, path)] = (path, verdict, message)
    return found


@pytest.mark.parametrize('place', sorted(PLACES))
@pytest.mark.parametrize('case', sorted(HOSTILE))
def test_hostile_file_is_refused_without_a_crash(verdicts, case, place):
    child = verdicts['child']
    assert (case, place) in verdicts, (
        'the reader died on this file (return code %d):\n%s'
        % (child.returncode, child.stderr[-2000:]))
    path, verdict, message = verdicts[(case, place)]
    assert verdict == 'REFUSED'
    assert repr(path) in message                  # the message names the file
    assert HOSTILE[case][1] in message
    assert 'Traceback' not in child.stderr


def test_no_state_of_numpy_was_changed(verdicts):
    """numpy's shared float64 dtype is what it was: no forged state (and
    no dtype made with copy=False) reached it."""
    assert verdicts['child'].returncode == 0
    assert verdicts['float64'][1:] == (np.dtype(np.float64).str, '0')


def test_the_hostile_construction_really_crashes_numpy(tmp_path):
    """Control: plain numpy, given one of these files, follows the forged
    address and the process dies.  This is what the checks prevent."""
    path = tmp_path / 'hostile.npy'
    hostile, _ = HOSTILE['object dtype with flags cleared']
    write_npy(path, top_level(hostile))
    result = run_child('import sys, numpy as np\n'
                       'print(repr(np.load(sys.argv[1], allow_pickle=True)'
                       '.item()))', path)
    assert result.returncode < 0, (result.returncode, result.stdout)


@pytest.mark.parametrize('order', ['<', '>'])
def test_genuine_constructions_still_load(tmp_path, order):
    """What real files hold: arrays in either byte order, numeric
    scalars, object arrays of arrays ([W, b] as an array)."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 3, 3, 4)).astype(order + 'f4')
    b = rng.standard_normal(4).astype(order + 'f4')
    pair = np.empty(2, dtype=object)
    pair[0], pair[1] = w, b
    path = tmp_path / 'w.npy'
    np.save(path, {'conv1': pair, 'fc8': [w[0, 0], b]}, allow_pickle=True)
    layers = weights.read_weights(path)
    np.testing.assert_array_equal(layers['conv1']['weights'], w)
    np.testing.assert_array_equal(layers['fc8']['weights'], w[0, 0])
    assert layers['conv1']['biases'].dtype == np.float32


def test_numeric_scalars_unpickle():
    """numpy scalars (scalar(dtype, bytes)) are plain numbers: allowed."""
    import io
    import pickle
    import safe_unpickle
    data = {'lr': np.float32(0.5), 'step': np.int64(7), 'on': np.bool_(True)}
    for protocol in (2, 4, 5):
        got = safe_unpickle.load(io.BytesIO(pickle.dumps(data, protocol)))
        assert got == data and type(got['lr']) is np.float32


def test_npz_member_with_an_object_field_is_refused(tmp_path):
    """.npz members are read with allow_pickle=False: a header that
    declares a structured dtype with an object field is refused."""
    import zipfile
    member = tmp_path / 'member.npy'
    with open(member, 'wb') as f:
        npy_format.write_array_header_1_0(
            f, {'descr': [('a', '|O')], 'fortran_order': False,
                'shape': (1,)})
        f.write(ADDRESS)
    path = tmp_path / 'w.npz'
    with zipfile.ZipFile(path, 'w') as archive:
        archive.write(member, 'conv1/weights.npy')
    result = run_child(READER, path)
    assert result.returncode == 0, result.stderr[-2000:]
    _, verdict, message = json.loads(result.stdout.splitlines()[0])
    assert verdict == 'REFUSED' and 'pickled objects' in message
