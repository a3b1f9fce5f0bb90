"""Read and write AlexNet weight files without running code hidden in them.

The classic ``bvlc_alexnet.npy`` is a *pickle*: ``np.save`` wrapped a Python
dict in an object array, and ``np.load(..., allow_pickle=True)`` rebuilds it
by running the instructions stored in the file.  Those instructions may name
any Python function -- ``os.system`` included -- so loading a file found on
the internet that way lets the file run whatever it wants on your machine.

This module is the one place in the project that opens weight files.  It

* reads pickled ``.npy`` files with a *restricted* unpickler that admits only
  the handful of numpy functions needed to rebuild arrays, and refuses every
  other global before anything runs;
* reads the pickle-free ``.npz`` layout (our recommended format);
* accepts every layout in circulation and returns one shape of result::

      {'conv1': {'weights': float32 array, 'biases': float32 array}, ...}

* turns every kind of broken file into a :class:`WeightsFileError` whose
  message names the file, the layer and the fix.

Supported layouts:

=====================  ===================================================
Toronto ``.npy``       ``{'conv1': [W, b], ...}`` (``bvlc_alexnet.npy``)
caffe-tensorflow       ``{'conv1': {'weights': W, 'biases': b}, ...}``
Python 2 pickles       the same, with ``bytes`` keys or latin-1 strings
``.npz``               arrays named ``conv1/weights``, ``conv1/biases``, ...
=====================  ===================================================

Weights are in TensorFlow order: conv ``(kh, kw, in/group, out)``, fully
connected ``(in, out)``.  Files from Caffe or ONNX use another order;
``tools/convert_weights.py`` converts them.
"""

import os
import pickle

import numpy as np
from numpy.lib import format as npy_format

LAYERS = ('conv1', 'conv2', 'conv3', 'conv4', 'conv5', 'fc6', 'fc7', 'fc8')
PARTS = ('weights', 'biases')

# bvlc_alexnet (1000 ImageNet classes) in TensorFlow order.  conv2, conv4
# and conv5 see half of their input channels: the original network was split
# over two GPUs ("group 2").
ALEXNET_SHAPES = {
    'conv1': {'weights': (11, 11, 3, 96), 'biases': (96,)},
    'conv2': {'weights': (5, 5, 48, 256), 'biases': (256,)},
    'conv3': {'weights': (3, 3, 256, 384), 'biases': (384,)},
    'conv4': {'weights': (3, 3, 192, 384), 'biases': (384,)},
    'conv5': {'weights': (3, 3, 192, 256), 'biases': (256,)},
    'fc6': {'weights': (9216, 4096), 'biases': (4096,)},
    'fc7': {'weights': (4096, 4096), 'biases': (4096,)},
    'fc8': {'weights': (4096, 1000), 'biases': (1000,)},
}

GET_WEIGHTS = ('see bvlc_alexnet.npy.md, or run '
               '`python tools/download.py --only weights`; a Caffe '
               '.caffemodel or an ONNX bvlcalexnet-*.onnx can be converted '
               'with `python tools/convert_weights.py SRC bvlc_alexnet.npz`')


class WeightsFileError(ValueError):
    """A weights file that cannot be used.  The message names the file, the
    layer where it applies, and what to do about it."""


# --------------------------------------------------------------------------
# The restricted unpickler
# --------------------------------------------------------------------------

try:                                    # numpy >= 2 keeps its core here ...
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:                     # ... numpy 1.x here
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric


def _latin1_encode(text, encoding='latin1'):
    """Stand-in for ``_codecs.encode``.

    Python 3 pickles with protocol 0-2 have no opcode for ``bytes``, so they
    store an array's raw data as ``_codecs.encode(text, 'latin1')``.  The real
    ``codecs.encode`` accepts any codec name; we accept only latin-1, the one
    a pickle of bytes uses.
    """
    if encoding.replace('-', '').replace('_', '').lower() != 'latin1':
        raise pickle.UnpicklingError(
            f'_codecs.encode with encoding {encoding!r}')
    return text.encode('latin1')


def _allowed_globals():
    """Every global a weights pickle may name, and the object it gets.

    Found by disassembling what np.save writes (python -m pickletools):
    arrays are rebuilt by _reconstruct(ndarray, shape, typecode) and
    ndarray.__setstate__, dtypes by dtype(...).  numpy 1.x files say
    'numpy.core', numpy 2 files 'numpy._core'.  dict, list, str and bytes
    need no global: pickle has opcodes for them.  Each name maps straight to
    the object, so the unpickler never imports a module named by the file.
    """
    allowed = {('numpy', 'ndarray'): np.ndarray,
               ('numpy', 'dtype'): np.dtype,
               ('_codecs', 'encode'): _latin1_encode}
    for core in ('numpy.core', 'numpy._core'):
        allowed.update({
            (core + '.multiarray', '_reconstruct'): _multiarray._reconstruct,
            (core + '.multiarray', 'scalar'): _multiarray.scalar,
            # protocol 5 rebuilds arrays with frombuffer(...).reshape(...)
            (core + '.numeric', '_frombuffer'): _numeric._frombuffer,
        })
    return allowed


_ALLOWED_GLOBALS = _allowed_globals()


class _ForbiddenGlobal(pickle.UnpicklingError):
    """The pickle asked for a global that a weights file never needs."""

    def __init__(self, qualified_name):
        super().__init__(qualified_name)
        self.qualified_name = qualified_name


class _WeightsUnpickler(pickle.Unpickler):
    """An unpickler that can only build numpy arrays, dicts, lists and
    strings.

    A pickle calls a function by first naming it (the GLOBAL opcodes), and
    the unpickler resolves every name through ``find_class``.  Answering
    from a fixed table means that a hostile file's ``os.system`` is refused
    when it is *named*, before it could be called.  Subclassing the C
    ``pickle.Unpickler`` keeps the fast C implementation for everything else.
    """

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _ForbiddenGlobal(f'{module}.{name}') from None


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------

def read_weights(path):
    """Read an AlexNet weights file safely.

    Returns ``{layer: {'weights': float32 array, 'biases': float32 array}}``
    for every layer in the file (not only AlexNet's).  Floating point arrays
    of another precision are converted to float32.  Anything else -- a
    missing, truncated or hostile file, an unknown layout, integer arrays --
    raises :class:`WeightsFileError`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsFileError(
            f'weights file {path!r} not found: {GET_WEIGHTS}')
    with open(path, 'rb') as f:
        magic = f.read(6)
        f.seek(0)
        # Decide by content, not by extension: renamed files are common.
        if magic.startswith(b'PK'):
            raw = _read_npz(path)
        elif magic == npy_format.MAGIC_PREFIX:
            raw = _read_npy(f, path)
        else:
            raise WeightsFileError(_not_a_weights_file(path, magic))
    return _normalize_layers(raw, path)


def _not_a_weights_file(path, start):
    """Explain what a file that is neither .npy nor .npz probably is."""
    if not start:
        what = 'is empty'
    elif npy_format.MAGIC_PREFIX.startswith(start):
        what = 'is a truncated .npy file'
    elif start.lstrip().startswith(b'<'):
        what = 'looks like an HTML page (a failed download?)'
    else:
        what = f'starts with {start!r}, not with the .npy or .npz signature'
    return f'{path!r} is not a weights file: it {what}. Get the weights: ' \
           f'{GET_WEIGHTS}'


def _read_npy(f, path):
    """Read the pickled dict of an ``.npy`` file with the restricted
    unpickler.

    An ``.npy`` file is a short text header (shape, dtype) followed by the
    data.  For an object array the data is a pickle, which ``np.load`` would
    hand to ``pickle.load``; we parse the header with numpy's own functions
    and give the rest to ``_WeightsUnpickler`` instead.
    """
    try:
        version = npy_format.read_magic(f)
        read_header = {(1, 0): npy_format.read_array_header_1_0,
                       (2, 0): npy_format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f'unsupported .npy format version {version}')
        shape, _, dtype = read_header(f)
    except Exception as err:    # ValueError, EOFError, tokenize errors
        raise WeightsFileError(
            f'{path!r} has a damaged .npy header ({err}). Download it '
            f'again: {GET_WEIGHTS}') from None
    if not dtype.hasobject:
        raise WeightsFileError(
            f'{path!r} holds a single {dtype} array of shape {shape}, not a '
            f'dict of layers; a weights file maps layer names to weights and '
            f'biases')
    try:
        # encoding='latin1' is how Python 3 reads the byte strings in the
        # Python 2 pickles of the original bvlc_alexnet.npy.
        obj = _WeightsUnpickler(f, encoding='latin1').load()
    except _ForbiddenGlobal as err:
        raise WeightsFileError(
            f'refusing to load {path!r}: its pickle asks for '
            f'{err.qualified_name!r}, which a weights file never needs. The '
            f'file may be malicious; nothing in it was run. Do not open it '
            f'with np.load(allow_pickle=True). Get the weights from a trusted '
            f'source: {GET_WEIGHTS}') from None
    except Exception as err:
        if not _is_truncation(err):
            # Untrusted bytes can fail inside pickle or numpy in many ways
            # (UnpicklingError, ValueError, TypeError, MemoryError, ...);
            # each means the same to the user: the file is damaged.
            raise WeightsFileError(
                f'{path!r} is damaged and cannot be read '
                f'({type(err).__name__}: {err}). Download it again: '
                f'{GET_WEIGHTS}') from None
        raise WeightsFileError(
            f'{path!r} is truncated (the file ends in the middle of the '
            f'data); the download was probably interrupted. Download it '
            f'again: {GET_WEIGHTS}') from None
    # np.save(dict) stores the dict inside a 0-d object array.
    if isinstance(obj, np.ndarray) and obj.shape == () and obj.dtype == object:
        obj = obj.item()
    if not isinstance(obj, dict):
        raise WeightsFileError(
            f'{path!r} holds a {type(obj).__name__}, not a dict of layers')
    return obj


def _is_truncation(err):
    """Did unpickling fail because the file ends too early?"""
    return isinstance(err, EOFError) or 'truncated' in str(err)


def _read_npz(path):
    """Read an ``.npz`` with arrays named ``layer/weights``, ``layer/biases``.

    ``allow_pickle=False`` makes numpy refuse object arrays, so an ``.npz``
    can never run code.  Returns the dict-of-dicts layout.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except ValueError as err:
        if 'allow_pickle' not in str(err):
            raise WeightsFileError(
                f'{path!r} is a damaged .npz file ({err})') from None
        raise WeightsFileError(
            f'{path!r} contains pickled objects; a weights .npz holds only '
            f'plain arrays named like "conv1/weights". Convert the source '
            f'with tools/convert_weights.py') from None
    except Exception as err:    # BadZipFile, EOFError, OSError, zlib.error
        raise WeightsFileError(
            f'{path!r} is a damaged or truncated .npz file '
            f'({type(err).__name__}: {err}). Download or convert it '
            f'again') from None
    layers, odd_names = {}, []
    for key, array in arrays.items():
        layer, _, part = key.rpartition('/')
        if not layer or part not in PARTS:
            odd_names.append(key)
        else:
            layers.setdefault(layer, {})[part] = array
    if odd_names:
        raise WeightsFileError(
            f'{path!r}: arrays {odd_names} are not named "<layer>/weights" or '
            f'"<layer>/biases" (as in "conv1/weights")')
    return layers


# --------------------------------------------------------------------------
# One layout for every file
# --------------------------------------------------------------------------

def _as_str(key):
    """Layer names are ``bytes`` in pickles written by Python 2."""
    return key.decode('latin1') if isinstance(key, bytes) else str(key)


def _normalize_layers(raw, source):
    """Bring any supported layout into ``{name: {'weights', 'biases'}}``
    with float32 arrays; raise one error that lists every bad layer."""
    layers, problems = {}, []
    for key, value in raw.items():
        name = _as_str(key)
        try:
            layers[name] = _normalize_layer(value)
        except _LayerProblem as problem:
            problems.append(f"layer '{name}': {problem}")
    if problems:
        raise WeightsFileError(
            f'{source!r} is not a usable weights file:\n  - '
            + '\n  - '.join(problems))
    return layers


class _LayerProblem(Exception):
    """What is wrong with one layer; collected into a WeightsFileError."""


def _normalize_layer(value):
    """``[W, b]`` or ``{'weights': W, 'biases': b}`` -> the dict, float32."""
    if isinstance(value, dict):
        parts = {_as_str(k): v for k, v in value.items()}
        missing = [p for p in PARTS if p not in parts]
        if missing:
            raise _LayerProblem(
                f'has {sorted(parts)}, lacks {missing}')
        weights, biases = parts['weights'], parts['biases']
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        weights, biases = value
    else:
        raise _LayerProblem(
            f'is a {type(value).__name__}; expected [weights, biases] or '
            f"{{'weights': ..., 'biases': ...}}")
    return {'weights': _as_float32(weights, 'weights'),
            'biases': _as_float32(biases, 'biases')}


def _as_float32(array, part):
    """Accept any floating point array (float16/64 are converted, as the
    model computes in float32); refuse integers, strings and objects."""
    if not isinstance(array, np.ndarray):
        raise _LayerProblem(f'{part} is a {type(array).__name__}, '
                            f'not a numpy array')
    if not np.issubdtype(array.dtype, np.floating):
        raise _LayerProblem(f'{part} have dtype {array.dtype}; expected '
                            f'floating point numbers (float32)')
    # copy=False: the usual float32 file costs no second copy in memory.
    return array.astype(np.float32, copy=False)


# --------------------------------------------------------------------------
# Checking a file against the model
# --------------------------------------------------------------------------

def check_layers(layers, expected_shapes, skip_layer=(), path='weights'):
    """Check weights read by :func:`read_weights` against the model.

    ``expected_shapes`` is ``{'conv1': {'weights': (11, 11, 3, 96),
    'biases': (96,)}, ...}``; layers named in ``skip_layer`` are trained from
    scratch, so they may be missing or have other shapes.

    Raises :class:`WeightsFileError` listing *all* problems at once (missing
    layers, wrong shapes with a likely fix, wrong dtypes), so the user fixes
    everything in one go.  Returns a list of warnings (strings) about layers
    in the file that the model does not have; the caller shows them.
    """
    skip = set(skip_layer)
    problems = []
    for name, expected in expected_shapes.items():
        if name in skip:
            continue
        if name not in layers:
            problems.append(
                f"layer '{name}' is missing from the file (layers in the "
                f"file: {sorted(layers)}); add '{name}' to skip_layer to "
                f"train it from scratch, or use a complete AlexNet file")
            continue
        problems += _layer_problems(name, layers[name], expected)
    if problems:
        raise WeightsFileError(
            f'{path!r} does not fit the model:\n  - ' + '\n  - '.join(problems))
    return [f"{path!r}: layer '{name}' is not in the model and is ignored"
            for name in layers if name not in expected_shapes]


def _layer_problems(name, layer, expected):
    """Shape and dtype problems of one layer, as messages."""
    have = {p: tuple(np.shape(layer.get(p))) for p in PARTS}
    want = {p: tuple(int(d) for d in expected[p]) for p in PARTS}
    problems = []
    if have != want:
        problems.append(
            f"layer '{name}': weights {have['weights']} and biases "
            f"{have['biases']} in the file, the model has "
            f"{want['weights']} and {want['biases']}: "
            f"{_likely_fix(name, have['weights'], want['weights'])}")
    for part in PARTS:
        dtype = getattr(layer.get(part), 'dtype', None)
        if dtype != np.float32:
            problems.append(f"layer '{name}': {part} have dtype {dtype}, "
                            f"expected float32")
    return problems


def _likely_fix(name, have, want):
    """Guess why a weight shape differs and say what to do."""
    if len(have) == len(want) and have[:-1] == want[:-1]:
        return (f'{name} in the file has {have[-1]} outputs, the model has '
                f"{want[-1]}: keep '{name}' in skip_layer so it is trained "
                f'from scratch')
    caffe_order = {2: want[::-1], 4: (want[3], want[2], want[0], want[1])}
    if have == caffe_order.get(len(want)):
        return ('the file stores weights in Caffe/ONNX order (outputs '
                'first); convert it with `python tools/convert_weights.py`')
    return 'the file was made for a different network'


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------

def save_npz(layers, path):
    """Write ``layers`` as a pickle-free ``.npz`` (``conv1/weights``, ...).

    This is the recommended format: it loads fast and cannot carry code.
    ``layers`` may be in any layout :func:`read_weights` understands.
    """
    layers = _normalize_layers(layers, 'layers to save')
    arrays = {f'{name}/{part}': layer[part]
              for name, layer in layers.items() for part in PARTS}
    # Uncompressed: random-looking float32 barely compresses, and
    # uncompressed members load faster.
    _write_atomically(path, lambda f: np.savez(f, **arrays))


def save_toronto_npy(layers, path):
    """Write ``layers`` in the original Toronto layout, a pickled
    ``{'conv1': [W, b], ...}``, for tools that expect ``bvlc_alexnet.npy``.
    Prefer :func:`save_npz` for anything else."""
    layers = _normalize_layers(layers, 'layers to save')
    toronto = {name: [layer['weights'], layer['biases']]
               for name, layer in layers.items()}
    _write_atomically(path, lambda f: np.save(f, toronto, allow_pickle=True))


def _write_atomically(path, write):
    """Write to a temporary file next to ``path``, then rename it.

    An interrupted write would otherwise leave a truncated file under the
    final name, which looks like weights until it is loaded.  Writing to an
    open file also stops numpy from appending '.npy'/'.npz' to the name.
    """
    path = os.fspath(path)
    tmp = path + '.partial'
    try:
        with open(tmp, 'wb') as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
