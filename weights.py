"""Read and write AlexNet weight files without running code hidden in them.

The classic ``bvlc_alexnet.npy`` is a *pickle*: ``np.save`` wrapped a Python
dict in an object array, and ``np.load(..., allow_pickle=True)`` rebuilds it
by running the instructions stored in the file.  Those instructions may name
any Python function -- ``os.system`` included -- so loading a file found on
the internet that way lets the file run whatever it wants on your machine.

This module is the one place in the project that opens weight files.  It

* reads pickled ``.npy`` files with a *restricted* unpickler
  (``safe_unpickle.py``) that admits only the handful of numpy functions
  needed to rebuild numeric arrays, checks what they are given, and refuses
  everything else before it runs;
* reads the pickle-free ``.npz`` layout (our recommended format);
* accepts every layout in circulation and returns one shape of result::

      {'conv1': {'weights': float32 array, 'biases': float32 array}, ...}

* turns every kind of broken file into a :class:`WeightsFileError` whose
  message names the file, the layer and the fix; a missing file into a
  :class:`MissingWeightsError` that says how to get it, points to a weights
  file of another name beside it, and how to train without it;
* checks the weights against the model (:func:`check_layers`): shapes,
  dtypes, and NaN or infinity, which would make the network train at chance
  without a word.

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
import shlex
import zipfile

import numpy as np
from numpy.lib import format as npy_format

import safe_unpickle

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

#: the name tools/download.py saves the weights under
DOWNLOADED_NAME = 'bvlc_alexnet.npy'

GET_WEIGHTS = ('see bvlc_alexnet.npy.md, or run '
               '`python tools/download.py --only weights`; a Caffe '
               '.caffemodel or an ONNX bvlcalexnet-*.onnx can be converted '
               'with `python tools/convert_weights.py SRC bvlc_alexnet.npz`')


class WeightsFileError(ValueError):
    """A weights file that cannot be used.  The message names the file, the
    layer where it applies, and what to do about it."""


class MissingWeightsError(WeightsFileError):
    """The weights file does not exist.

    ``path`` is the file that was asked for; ``alternative`` a readable
    weights file found in the same folder (such as ``bvlc_alexnet.npz``
    beside a missing ``bvlc_alexnet.npy``), or None.  The message is
    :func:`missing_weights_message`'s: how to get the file, or how to train
    without it.
    """

    def __init__(self, path, script='finetune.py'):
        self.path = os.fspath(path)
        self.alternative = find_other_weights(self.path)
        super().__init__(_missing_message(self.path, script,
                                          self.alternative))


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------

def read_weights(path):
    """Read an AlexNet weights file safely.

    Returns ``{layer: {'weights': float32 array, 'biases': float32 array}}``
    for every layer in the file (not only AlexNet's).  Floating point arrays
    of another precision are converted to float32.  A missing file raises
    :class:`MissingWeightsError`; anything else -- a truncated or hostile
    file, an unknown layout, integer arrays -- :class:`WeightsFileError`.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise WeightsFileError(f'{path!r} is a folder; weights_path must name '
                               f'the weights file in it. {GET_WEIGHTS}')
    if not os.path.isfile(path):
        raise MissingWeightsError(path)
    return _read_file(path)


def _read_file(path):
    """read_weights for a file known to exist (no search beside it)."""
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


# --------------------------------------------------------------------------
# When the file is missing
# --------------------------------------------------------------------------

def missing_weights_message(path, script='finetune.py'):
    """The whole message for a weights file that does not exist: a usable
    weights file found beside it (``found bvlc_alexnet.npz: pass
    --weights_path bvlc_alexnet.npz``), the download command, and the two
    ways to train without ImageNet weights.  ``script`` is the training
    script the user runs, named in the advice."""
    path = os.fspath(path)
    return _missing_message(path, script, find_other_weights(path))


def _missing_message(path, script, alternative):
    folder = os.path.dirname(path) or '.'
    lines = [f'weights file {path!r} not found.']
    if alternative:
        lines.append(f'  found {os.path.basename(alternative)}: pass '
                     f'--weights_path {shlex.quote(alternative)}')
    lines += ['  Get the ImageNet weights (details in bvlc_alexnet.npy.md):',
              '      python tools/download.py --only weights --weights-dest '
              + shlex.quote(folder)]
    if os.path.basename(path) != DOWNLOADED_NAME:
        saved = os.path.join(folder, DOWNLOADED_NAME)
        lines.append(f'    it saves {saved}: then pass --weights_path '
                     f'{shlex.quote(saved)}')
    lines += [
        '    or convert a Caffe .caffemodel or an ONNX bvlcalexnet-*.onnx:',
        '      python tools/convert_weights.py SRC bvlc_alexnet.npz',
        '  Or train without them (every layer starts from random weights):',
        f'    - pass --scratch: python {script} --scratch',
        f'    - or comment out `model.load_initial_weights(sess)` in {script}']
    return '\n'.join(lines)


def find_other_weights(path, max_tries=5):
    """A weights file beside the missing ``path`` that :func:`read_weights`
    can read, or None.

    Looks at the ``.npy``/``.npz`` files in ``path``'s folder, those with the
    same name first (``bvlc_alexnet.npz`` for ``bvlc_alexnet.npy``), then any
    with "alexnet" in the name, then the rest; reads at most ``max_tries`` of
    them, as a folder may hold many large arrays that are not weights.
    Returns the path in the style of ``path`` (relative stays relative).
    """
    folder = os.path.dirname(path)
    stem = os.path.splitext(os.path.basename(path))[0].lower()
    try:
        names = [name for name in os.listdir(folder or '.')
                 if name.lower().endswith(('.npy', '.npz'))]
    except OSError:
        return None

    def rank(name):
        low = name.lower()
        return (os.path.splitext(low)[0] != stem, 'alexnet' not in low, low)

    for name in sorted(names, key=rank)[:max_tries]:
        candidate = os.path.join(folder, name)
        try:
            if os.path.isfile(candidate) and _may_hold_weights(candidate):
                _read_file(candidate)
                return candidate
        except (WeightsFileError, OSError, zipfile.BadZipFile):
            continue                            # not weights, or vanished
    return None


def _may_hold_weights(path):
    """A cheap look before a full read, so that big arrays of other things
    are not read in full: an .npz must have members named '<layer>/weights'.
    (An .npy holding a plain array is refused after its header anyway.)"""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith('/weights.npy')
                       for name in archive.namelist())
    return True


def _read_npy(f, path):
    """Read the pickled dict of an ``.npy`` file with the restricted
    unpickler.

    An ``.npy`` file is a short text header (shape, dtype) followed by the
    data.  For an object array the data is a pickle, which ``np.load`` would
    hand to ``pickle.load``; we parse the header with numpy's own functions
    and give the rest to ``safe_unpickle.load`` instead.
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
        obj = safe_unpickle.load(f, encoding='latin1')
    except safe_unpickle.RefusedPickle as err:
        raise WeightsFileError(
            f'refusing to load {path!r}: {err.reason}. The file may be '
            f'malicious; nothing in it was run. Do not open it with '
            f'np.load(allow_pickle=True). Get the weights from a trusted '
            f'source: {GET_WEIGHTS}') from None
    except Exception as err:
        if not _is_truncation(err):
            # Untrusted bytes can fail inside pickle or numpy in many ways
            # (UnpicklingError, ValueError, TypeError, MemoryError, ...);
            # each means the same to the user: the file is damaged.
            raise WeightsFileError(
                f'{path!r} is damaged and cannot be read '
                f'({type(err).__name__}: {err!s:.300}). Download it again: '
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
    elif isinstance(value, np.ndarray) and value.dtype == object \
            and value.shape == (2,):      # np.array([W, b], dtype=object)
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
    layers, wrong shapes with a likely fix, wrong dtypes, NaN or infinite
    values), so the user fixes everything in one go.  Returns a list of
    warnings (strings) about layers in the file that the model does not
    have; the caller shows them.
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
        else:
            problems += _nonfinite_problems(name, part, layer[part])
    return problems


def check_finite(layers, skip_layer=(), path='weights'):
    """Refuse weights holding NaN or infinity, naming each layer.

    One NaN in a layer makes every output NaN: the loss is NaN from the
    first step and the network trains at chance without an error.
    :func:`check_layers` runs this check too; call this one alone when the
    shapes need no check.
    """
    skip, problems = set(skip_layer), []
    for name, layer in layers.items():
        if name not in skip:
            for part in PARTS:
                problems += _nonfinite_problems(name, part, layer[part])
    if problems:
        raise WeightsFileError(
            f'{path!r} is not usable:\n  - ' + '\n  - '.join(problems))


def _nonfinite_problems(name, part, array):
    """[message] when ``array`` holds NaN or infinity, else []."""
    finite = np.isfinite(array)
    if finite.all():
        return []
    nans = int(np.isnan(array).sum())
    first = tuple(int(i) for i in np.argwhere(~finite)[0])
    return [f"layer '{name}': {part} hold {nans} NaN and "
            f"{finite.size - int(finite.sum()) - nans} infinite values "
            f"(the first at index {first}); the file is damaged or comes "
            f"from a training run that diverged. Download or convert it "
            f"again, or add '{name}' to skip_layer to train it from scratch"]


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
