"""weights.py: every layout loads, every broken or hostile file is refused.

The hostile files are built here, in the test.  The "payloads" only touch
files under pytest's tmp_path; the assertions check that reading the file
with read_weights did *not* run them.
"""
import io
import os
import pickle
import struct

import numpy as np
import pytest
from numpy.lib import format as npy_format

import weights  # the project root is on sys.path: see conftest.py
from weights import WeightsFileError, check_layers, read_weights

# A small stand-in for AlexNet: two layers in TensorFlow order.
SHAPES = {'conv1': {'weights': (3, 3, 3, 4), 'biases': (4,)},
          'fc8': {'weights': (8, 5), 'biases': (5,)}}


def small_layers(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return {name: {part: rng.standard_normal(shape).astype(dtype)
                   for part, shape in parts.items()}
            for name, parts in SHAPES.items()}


def toronto(layers):
    """{'conv1': [W, b]}, the layout of bvlc_alexnet.npy."""
    return {name: [layer['weights'], layer['biases']]
            for name, layer in layers.items()}


def assert_same_layers(got, expected):
    assert list(got) == list(expected)
    for name, layer in expected.items():
        for part in weights.PARTS:
            assert got[name][part].dtype == np.float32
            np.testing.assert_array_equal(got[name][part], layer[part])


def write_npy_with_pickle(path, payload):
    """An .npy file whose data is ``payload``: a 0-d object array header
    followed by raw pickle bytes, exactly what np.save(dict) writes."""
    with open(path, 'wb') as f:
        npy_format.write_array_header_1_0(
            f, {'descr': '|O', 'fortran_order': False, 'shape': ()})
        f.write(payload)


class Py2Pickler(pickle._Pickler):
    """Pickles like Python 2's numpy did for the original bvlc_alexnet.npy:
    protocol 2, ``bytes`` as Python 2 ``str`` (BINSTRING), globals from
    ``numpy.core``.  Python 3 reads such strings back with encoding='latin1'.
    """
    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, data):
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack('<i', len(data)) + data)
        self.memoize(data)
    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None):
        module = obj.__module__.replace('numpy._core', 'numpy.core')
        self.write(pickle.GLOBAL + f'{module}\n{obj.__qualname__}\n'.encode())
        self.memoize(obj)


def py2_pickle(obj):
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


# --------------------------------------------------------------------------
# Every layout in circulation
# --------------------------------------------------------------------------

def test_toronto_layout_round_trip(tmp_path):
    layers = small_layers()
    path = tmp_path / 'bvlc_alexnet.npy'
    weights.save_toronto_npy(layers, path)
    assert os.listdir(tmp_path) == ['bvlc_alexnet.npy']    # no .partial left
    loaded = np.load(path, allow_pickle=True).item()        # really Toronto
    assert isinstance(loaded['conv1'], list) and len(loaded['conv1']) == 2
    assert_same_layers(read_weights(path), layers)


def test_caffe_tensorflow_dict_of_dicts(tmp_path):
    layers = small_layers()
    path = tmp_path / 'w.npy'
    np.save(path, layers, allow_pickle=True)
    assert_same_layers(read_weights(path), layers)


def test_bytes_keys(tmp_path):
    layers = small_layers()
    as_bytes = {name.encode(): {part.encode(): array
                                for part, array in layer.items()}
                for name, layer in layers.items()}
    path = tmp_path / 'w.npy'
    np.save(path, as_bytes, allow_pickle=True)
    assert_same_layers(read_weights(path), layers)


def test_python2_pickle(tmp_path):
    """Byte-string data and keys, numpy.core globals, protocol 2."""
    layers = small_layers()
    data = np.empty((), dtype=object)
    data[()] = {name.encode(): value
                for name, value in toronto(layers).items()}
    path = tmp_path / 'py2.npy'
    write_npy_with_pickle(path, py2_pickle(data))
    # the fixture is realistic: numpy itself reads it as it reads the original
    plain = np.load(path, allow_pickle=True, encoding='latin1').item()
    assert sorted(plain) == ['conv1', 'fc8']
    assert_same_layers(read_weights(path), layers)


@pytest.mark.parametrize('protocol', [0, 2, 3, 4, 5])
def test_every_pickle_protocol(tmp_path, protocol):
    """Protocols 0-2 in Python 3 store bytes via _codecs.encode, protocol 5
    rebuilds arrays with numpy's _frombuffer."""
    layers = small_layers()
    path = tmp_path / 'w.npy'
    write_npy_with_pickle(path, pickle.dumps(np.array(toronto(layers)),
                                             protocol=protocol))
    assert_same_layers(read_weights(path), layers)


def test_npz(tmp_path):
    layers = small_layers()
    path = tmp_path / 'w.npz'
    weights.save_npz(layers, path)
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ['conv1/biases', 'conv1/weights',
                                     'fc8/biases', 'fc8/weights']
    assert_same_layers(read_weights(path), layers)


def test_format_is_read_from_content_not_extension(tmp_path):
    layers = small_layers()
    path = tmp_path / 'weights.bin'
    weights.save_npz(layers, path)
    assert os.listdir(tmp_path) == ['weights.bin']  # no '.npz' appended
    assert_same_layers(read_weights(path), layers)


def test_other_float_precisions_become_float32(tmp_path):
    path = tmp_path / 'w.npy'
    layers = small_layers(np.float64)
    layers['fc8']['biases'] = layers['fc8']['biases'].astype(np.float16)
    np.save(path, toronto(layers), allow_pickle=True)
    got = read_weights(path)
    assert all(a.dtype == np.float32 for layer in got.values()
               for a in layer.values())
    np.testing.assert_allclose(got['conv1']['weights'],
                               layers['conv1']['weights'], rtol=1e-6)


# --------------------------------------------------------------------------
# Hostile files: refused by name, nothing runs
# --------------------------------------------------------------------------

class CreatesFile:
    """Unpickling this calls open(path, 'w'): it creates a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, 'w'))


class RunsShell:
    """Unpickling this calls os.system(command)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class Evaluates:
    """Unpickling this calls eval(expression)."""

    def __init__(self, expression):
        self.expression = expression

    def __reduce__(self):
        return (eval, (self.expression,))


def assert_refused(path, global_name, marker):
    with pytest.raises(WeightsFileError) as error:
        read_weights(path)
    message = str(error.value)
    assert global_name in message and str(path) in message
    assert 'malicious' in message
    assert not marker.exists(), 'the hostile payload ran'


def test_the_hostile_fixture_really_is_hostile(tmp_path):
    """Control: a plain np.load runs the payload (it only creates a file in
    tmp_path).  This is why read_weights exists."""
    marker = tmp_path / 'created'
    path = tmp_path / 'hostile.npy'
    write_npy_with_pickle(path, pickle.dumps(CreatesFile(marker)))
    np.load(path, allow_pickle=True)
    assert marker.exists()


def test_top_level_payload_creating_a_file(tmp_path):
    marker = tmp_path / 'created'
    path = tmp_path / 'hostile.npy'
    write_npy_with_pickle(path, pickle.dumps(CreatesFile(marker)))
    assert_refused(path, 'io.open', marker)     # how pickle names open()


def test_os_system_inside_the_object_array(tmp_path):
    marker = tmp_path / 'pwned'
    payload = RunsShell(f'touch {marker}')
    path = tmp_path / 'hostile.npy'
    np.save(path, {'conv1': [payload, np.zeros(4, np.float32)]},
            allow_pickle=True)
    # os.system pickles as posix.system (nt.system on Windows)
    assert_refused(path, f'{os.system.__module__}.system', marker)


def test_eval_after_genuine_layers(tmp_path):
    """The payload sits after valid arrays: refused all the same."""
    marker = tmp_path / 'evaluated'
    data = toronto(small_layers())
    data['zz'] = [Evaluates(f'open({str(marker)!r}, "w")'), None]
    path = tmp_path / 'hostile.npy'
    np.save(path, data, allow_pickle=True)
    assert_refused(path, 'builtins.eval', marker)


def test_hand_written_protocol_0_pickle(tmp_path):
    """The classic text pickle: GLOBAL 'os system', called with a string."""
    marker = tmp_path / 'pwned'
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    path = tmp_path / 'hostile.npy'
    write_npy_with_pickle(path, payload)
    assert_refused(path, 'os.system', marker)


def test_codecs_encode_only_for_latin1(tmp_path):
    """_codecs.encode is admitted for protocol-2 bytes, with latin-1 only."""
    payload = (b"c_codecs\nencode\n(Vabc\nVrot13\ntR.")
    path = tmp_path / 'w.npy'
    write_npy_with_pickle(path, payload)
    with pytest.raises(WeightsFileError, match='damaged'):
        read_weights(path)


# --------------------------------------------------------------------------
# Broken files: a clear WeightsFileError, never a traceback from numpy
# --------------------------------------------------------------------------

def test_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(WeightsFileError,
                       match='tools/download.py --only weights'):
        read_weights(tmp_path / 'bvlc_alexnet.npy')


@pytest.mark.parametrize('fraction', [0.0, 0.01, 0.05, 0.3, 0.6, 0.99])
@pytest.mark.parametrize('save', [weights.save_toronto_npy, weights.save_npz])
def test_truncated(tmp_path, save, fraction):
    path = tmp_path / 'w'
    save(small_layers(), path)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(WeightsFileError) as error:
        read_weights(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize('content, words', [
    (b'', 'empty'),
    (b'<!DOCTYPE html><html>Not Found</html>', 'HTML'),
    (b'conv1 0.1 0.2 0.3\n', 'not a weights file'),
    (b'\x93NUMPY\x09\x00\x10\x00', 'damaged .npy header'),
    (b'\x93NUMPY\x01\x00\x10\x00{"descr": garbage', 'damaged .npy header'),
])
def test_not_a_weights_file(tmp_path, content, words):
    path = tmp_path / 'bvlc_alexnet.npy'
    path.write_bytes(content)
    with pytest.raises(WeightsFileError, match=words):
        read_weights(path)


def test_single_array_npy(tmp_path):
    path = tmp_path / 'w.npy'
    np.save(path, np.zeros((3, 3), np.float32))
    with pytest.raises(WeightsFileError, match='not a dict of layers'):
        read_weights(path)


def test_pickled_list_instead_of_dict(tmp_path):
    path = tmp_path / 'w.npy'
    write_npy_with_pickle(path, pickle.dumps([1, 2, 3]))
    with pytest.raises(WeightsFileError, match='holds a list'):
        read_weights(path)


def test_bad_layers_are_all_reported(tmp_path):
    data = toronto(small_layers())
    data['conv1'][0] = data['conv1'][0].astype(np.int32)
    data['fc8'] = {'weights': data['fc8'][0]}                 # no biases
    data['fc9'] = 'not weights'
    path = tmp_path / 'w.npy'
    np.save(path, data, allow_pickle=True)
    with pytest.raises(WeightsFileError) as error:
        read_weights(path)
    message = str(error.value)
    assert "'conv1': weights have dtype int32" in message
    assert "'fc8'" in message and "'biases'" in message
    assert "'fc9': is a str" in message


def test_npz_with_pickled_objects(tmp_path):
    path = tmp_path / 'w.npz'
    np.savez(path, **{'conv1/weights': np.array([{'a': 1}], dtype=object)})
    with pytest.raises(WeightsFileError, match='pickled objects'):
        read_weights(path)


def test_npz_with_unexpected_names(tmp_path):
    path = tmp_path / 'w.npz'
    np.savez(path, conv1_W=np.zeros(3, np.float32))
    with pytest.raises(WeightsFileError, match='conv1_W'):
        read_weights(path)


# --------------------------------------------------------------------------
# check_layers: the file against the model
# --------------------------------------------------------------------------

MODEL = {'conv1': {'weights': (3, 3, 3, 4), 'biases': (4,)},
         'conv2': {'weights': (3, 3, 4, 6), 'biases': (6,)},
         'fc8': {'weights': (8, 2), 'biases': (2,)}}


def test_check_layers_accepts_a_fitting_file():
    layers = small_layers()
    model = {'conv1': MODEL['conv1'], 'fc8': SHAPES['fc8']}
    assert check_layers(layers, model, [], 'w.npy') == []


def test_check_layers_reports_every_problem_at_once():
    layers = small_layers()          # lacks conv2; fc8 has 5 outputs, not 2
    with pytest.raises(WeightsFileError) as error:
        check_layers(layers, MODEL, [], 'w.npy')
    message = str(error.value)
    assert "'w.npy'" in message
    assert "'conv2' is missing" in message
    assert ('fc8 in the file has 5 outputs, the model has 2: '
            "keep 'fc8' in skip_layer") in message
    assert '(8, 5)' in message and '(8, 2)' in message


def test_check_layers_skipped_layers_may_be_missing_or_differ():
    assert check_layers(small_layers(), MODEL, ['conv2', 'fc8'], 'w') == []


def test_check_layers_recognises_caffe_order():
    layers = small_layers()
    layers['conv1']['weights'] = layers['conv1']['weights'].transpose(
        3, 2, 0, 1)                                   # HWIO -> OIHW
    with pytest.raises(WeightsFileError, match='convert_weights.py'):
        check_layers(layers, MODEL, ['conv2', 'fc8'], 'w')


def test_check_layers_reports_dtype():
    layers = small_layers()
    layers['conv1']['biases'] = layers['conv1']['biases'].astype(np.float64)
    with pytest.raises(WeightsFileError, match='biases have dtype float64'):
        check_layers(layers, MODEL, ['conv2', 'fc8'], 'w')


def test_check_layers_warns_about_layers_the_model_lacks():
    layers = small_layers()
    layers['fc9'] = layers['fc8']
    warnings = check_layers(layers, MODEL, ['conv2', 'fc8'], 'w.npy')
    assert len(warnings) == 1
    assert "'w.npy': layer 'fc9' is not in the model" in warnings[0]


# --------------------------------------------------------------------------
# NaN and infinity: refused with the layer's name
# --------------------------------------------------------------------------

@pytest.mark.parametrize('bad, words', [(np.nan, '1 NaN and 0 infinite'),
                                        (np.inf, '0 NaN and 1 infinite'),
                                        (-np.inf, '0 NaN and 1 infinite')])
def test_check_layers_refuses_non_finite_weights(tmp_path, bad, words):
    layers = small_layers()
    layers['conv1']['weights'][1, 2, 0, 3] = bad
    path = tmp_path / 'w.npz'
    weights.save_npz(layers, path)
    loaded = read_weights(path)           # reading works: it is a real file
    model = {'conv1': MODEL['conv1'], 'fc8': SHAPES['fc8']}
    with pytest.raises(WeightsFileError) as error:
        check_layers(loaded, model, [], str(path))
    message = str(error.value)
    assert str(path) in message
    assert f"layer 'conv1': weights hold {words}" in message
    assert '(1, 2, 0, 3)' in message and 'skip_layer' in message
    assert 'fc8' not in message               # the clean layer is not blamed


def test_non_finite_in_a_skipped_layer_is_no_problem():
    """A layer in skip_layer is not loaded, so its values do not matter."""
    layers = small_layers()
    layers['fc8']['biases'][:] = np.nan
    model = {'conv1': MODEL['conv1'], 'fc8': SHAPES['fc8']}
    assert check_layers(layers, model, ['fc8'], 'w') == []
    weights.check_finite(layers, skip_layer=['fc8'])
    with pytest.raises(WeightsFileError, match="'fc8': biases hold 5 NaN"):
        weights.check_finite(layers, path='w')


def test_every_non_finite_layer_is_listed():
    layers = small_layers()
    layers['conv1']['biases'][0] = np.inf
    layers['fc8']['weights'][:] = np.nan
    with pytest.raises(WeightsFileError) as error:
        weights.check_finite(layers, path='w.npy')
    message = str(error.value)
    assert "'conv1': biases hold 0 NaN and 1 infinite" in message
    assert "'fc8': weights hold 40 NaN and 0 infinite" in message


# --------------------------------------------------------------------------
# A missing file: what to do, and a file of another name found beside it
# --------------------------------------------------------------------------

def test_missing_file_message_gives_every_route(tmp_path):
    path = tmp_path / 'bvlc_alexnet.npy'
    with pytest.raises(weights.MissingWeightsError) as error:
        read_weights(path)
    message = str(error.value)
    assert isinstance(error.value, WeightsFileError)
    assert error.value.path == str(path) and error.value.alternative is None
    assert (f'python tools/download.py --only weights --weights-dest '
            f'{tmp_path}') in message
    assert 'bvlc_alexnet.npy.md' in message
    assert 'python finetune.py --scratch' in message
    assert 'comment out `model.load_initial_weights(sess)`' in message
    assert '--weights_path' not in message        # nothing found beside it
    assert message == weights.missing_weights_message(path)


def test_missing_file_points_to_the_npz_beside_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    weights.save_npz(small_layers(), 'bvlc_alexnet.npz')
    (tmp_path / 'features.npy').write_bytes(b'not weights')
    np.save(tmp_path / 'bvlc_alexnet_mean.npy', np.zeros(3))
    with pytest.raises(weights.MissingWeightsError) as error:
        read_weights('bvlc_alexnet.npy')
    assert ('found bvlc_alexnet.npz: pass --weights_path bvlc_alexnet.npz'
            in str(error.value))
    assert error.value.alternative == 'bvlc_alexnet.npz'


def test_missing_file_finds_weights_of_any_name_in_its_folder(tmp_path):
    folder = tmp_path / 'my weights'
    folder.mkdir()
    np.save(folder / 'a_features.npy', np.zeros((4, 4)))    # not weights
    weights.save_toronto_npy(small_layers(), folder / 'converted.npy')
    message = weights.missing_weights_message(folder / 'bvlc_alexnet.npy',
                                              script='finetune_pil.py')
    expected = os.path.join(str(folder), 'converted.npy')
    assert f"found converted.npy: pass --weights_path '{expected}'" in message
    assert 'python finetune_pil.py --scratch' in message
    assert f"--weights-dest '{folder}'" in message       # quoted: a space


def test_other_name_says_where_the_download_lands(tmp_path):
    message = weights.missing_weights_message(tmp_path / 'w.npy')
    saved = os.path.join(str(tmp_path), 'bvlc_alexnet.npy')
    assert f'it saves {saved}: then pass --weights_path {saved}' in message


def test_broken_file_beside_is_not_suggested(tmp_path):
    (tmp_path / 'bvlc_alexnet.npz').write_bytes(b'PK\x03\x04 broken')
    message = weights.missing_weights_message(tmp_path / 'bvlc_alexnet.npy')
    assert 'found bvlc_alexnet.npz' not in message
    assert '--weights_path' not in message


def test_a_folder_as_weights_path(tmp_path):
    with pytest.raises(WeightsFileError, match='is a folder'):
        read_weights(tmp_path)


def test_load_initial_weights_gives_these_messages(tmp_path, monkeypatch):
    """AlexNet.load_initial_weights reads through read_weights and
    check_layers, so it stops with the same messages."""
    tf = pytest.importorskip('tensorflow')
    from alexnet import AlexNet
    monkeypatch.chdir(tmp_path)
    conv1 = {'weights': np.zeros((11, 11, 3, 96), np.float32),
             'biases': np.zeros(96, np.float32)}
    conv1['weights'][0, 0, 0, 0] = np.nan
    weights.save_npz({'conv1': conv1}, 'bvlc_alexnet.npz')
    others = ['conv2', 'conv3', 'conv4', 'conv5', 'fc6', 'fc7', 'fc8']

    def load(path):
        with tf.Graph().as_default():
            x = tf.compat.v1.placeholder(tf.float32, [None, 227, 227, 3])
            # the file is read before the session is used
            AlexNet(x, 1.0, 4, others, path).load_initial_weights(None)

    with pytest.raises(weights.MissingWeightsError,
                       match='found bvlc_alexnet.npz'):
        load('bvlc_alexnet.npy')
    with pytest.raises(WeightsFileError, match="'conv1': weights hold 1 NaN"):
        load('bvlc_alexnet.npz')
