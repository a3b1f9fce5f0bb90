"""Convert AlexNet weights from Caffe, ONNX or a pickled .npy to our format.

    python tools/convert_weights.py SRC DST [--no-check]

SRC is one of

* ``bvlc_alexnet.caffemodel`` -- Caffe's own file, read straight from the
  protobuf wire format, so neither Caffe nor compiled protos are needed;
* ``bvlcalexnet-*.onnx`` from the ONNX model zoo (needs ``pip install onnx``);
* a Toronto or caffe-tensorflow ``.npy`` (read safely; converting it to
  ``.npz`` drops the pickle for good), or an ``.npz``.

DST ending in ``.npz`` gets the recommended pickle-free file; ``.npy`` gets
the Toronto layout ``{'conv1': [W, b], ...}`` for older tools.

Caffe and ONNX store weights in another order than TensorFlow:

=========  ========================  ===========================
layer      Caffe / ONNX              TensorFlow (ours)
=========  ========================  ===========================
conv       (out, in/group, kh, kw)   (kh, kw, in/group, out)
fc         (out, in)                 (in, out)
fc6 rows   pool5 flattened as CHW    pool5 flattened as HWC
=========  ========================  ===========================

The last line matters most and fails silently: Caffe flattens pool5
(256 channels x 6 x 6) channel by channel, our NHWC graph position by
position, so fc6's 9216 rows must be reordered or the network outputs
garbage with no error at all.

After converting, the tool prints a per-layer summary, loads the result
into ``AlexNet`` to prove it fits and, for an ONNX source with onnxruntime
installed, compares our logits with onnxruntime's on random images.
"""

import argparse
import math
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from weights import (WeightsFileError, read_weights, save_npz,  # noqa: E402
                     save_toronto_npy)

# Largest logit difference, relative to the largest logit, that counts as
# "the same network" (float32 engines differ in summation order).
MAX_RELATIVE_DIFFERENCE = 1e-4


# --------------------------------------------------------------------------
# Caffe/ONNX order -> TensorFlow order
# --------------------------------------------------------------------------

def conv_to_tf(weights):
    """(out, in/group, kh, kw) -> (kh, kw, in/group, out).

    Grouped convolutions need nothing special: Caffe, ONNX and our graph all
    give the first half of the output channels to the first half of the
    input channels, so splitting the last axis in two recovers the groups.
    """
    return np.ascontiguousarray(weights.transpose(2, 3, 1, 0))


def fc_to_tf(weights):
    """(out, in) -> (in, out): Caffe computes W x, TensorFlow x W."""
    return np.ascontiguousarray(weights.T)


def chw_rows_to_hwc(weights, channels):
    """Reorder the rows of the first fc layer from CHW to HWC flattening.

    Row ``c*H*W + h*W + w`` (Caffe) becomes row ``h*W*C + w*C + c`` (ours).
    """
    rows, outputs = weights.shape
    side = int(round(math.sqrt(rows // channels)))
    if side * side * channels != rows:
        raise WeightsFileError(
            f'the first fc layer has {rows} inputs, which is not '
            f'{channels} channels times a square image')
    chw = weights.reshape(channels, side, side, outputs)
    return np.ascontiguousarray(chw.transpose(1, 2, 0, 3)).reshape(
        rows, outputs)


def caffe_order_to_tf(params):
    """Convert layers in Caffe order to ours.

    ``params`` lists ``(name, kind, weights, biases)`` in network order, with
    kind 'conv' or 'fc'.  The first fc layer after a conv layer reads the
    flattened conv output, so its rows are reordered (see module doc).
    """
    layers, channels = {}, None
    for name, kind, weights, biases in params:
        biases = np.asarray(biases, np.float32).reshape(-1)
        weights = np.asarray(weights, np.float32)
        if kind == 'conv':
            weights = conv_to_tf(weights)
            channels = biases.size
        else:
            # legacy Caffe blobs are (1, 1, out, in): keep the last two axes
            weights = fc_to_tf(weights.reshape(biases.size, -1))
            if channels is not None:
                weights = chw_rows_to_hwc(weights, channels)
                channels = None
        layers[name] = {'weights': weights, 'biases': biases}
    return layers


# --------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------

def read_onnx(path):
    """Weights of an ONNX AlexNet (model zoo ``bvlcalexnet-*.onnx``).

    The layers are found by walking the graph rather than by initializer
    name: the k-th Conv node becomes ``conv<k>``, the Gemm nodes after them
    ``fc6``, ``fc7``, ``fc8``.  A Gemm with ``transB=1`` (the zoo's choice)
    stores its weights (out, in) like Caffe; with ``transB=0`` they are
    (in, out) and are flipped first.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise WeightsFileError(
            f'reading {path!r} needs the onnx package: pip install onnx'
        ) from None
    try:
        model = onnx.load(path)
    except Exception as err:    # protobuf DecodeError, OSError, ...
        raise WeightsFileError(
            f'{path!r} is not a readable ONNX model ({err})') from None
    arrays = {t.name: numpy_helper.to_array(t)
              for t in model.graph.initializer}
    params, convs, fcs = [], 0, 0
    for node in model.graph.node:
        if node.op_type == 'Conv':
            convs += 1
            name, kind = f'conv{convs}', 'conv'
            weights = _initializer(arrays, node, 1, path)
        elif node.op_type == 'Gemm':
            fcs += 1
            name, kind = f'fc{5 + fcs}', 'fc'
            weights = _initializer(arrays, node, 1, path)
            if not _attribute(node, 'transB', 0):
                weights = weights.T
            if (_attribute(node, 'alpha', 1.0), _attribute(node, 'beta', 1.0)) \
                    != (1.0, 1.0):
                raise WeightsFileError(
                    f'{path!r}: Gemm {node.name!r} scales its terms '
                    f'(alpha/beta), which AlexNet does not')
        else:
            continue
        biases = _initializer(arrays, node, 2, path)
        print(f'  {name:6s} <- {node.input[1]}, {node.input[2]}')
        params.append((name, kind, weights, biases))
    if (convs, fcs) != (5, 3):
        raise WeightsFileError(
            f'{path!r} has {convs} Conv and {fcs} Gemm layers; AlexNet has '
            f'5 and 3')
    return caffe_order_to_tf(params)


def _initializer(arrays, node, index, path):
    """The constant feeding input ``index`` of ``node``."""
    if len(node.input) <= index or node.input[index] not in arrays:
        raise WeightsFileError(
            f'{path!r}: input {index} of {node.op_type} node {node.name!r} '
            f'is not a stored constant')
    return arrays[node.input[index]]


def _attribute(node, name, default):
    """The value of an attribute of an ONNX node."""
    from onnx import helper
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


# --------------------------------------------------------------------------
# Caffe: a tiny protobuf wire-format reader
# --------------------------------------------------------------------------
#
# A protobuf message is a sequence of fields.  Each starts with a varint
# key = field_number << 3 | wire_type; the wire type says how long the value
# is: 0 varint, 1 eight bytes, 2 varint length + that many bytes (strings,
# sub-messages, packed arrays), 5 four bytes.  Nothing else is needed to
# walk a .caffemodel; the field numbers come from caffe.proto.

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5

# caffe.proto: NetParameter.layer = 100 (LayerParameter: name 1, type 2 as a
# string, blobs 7) and the deprecated NetParameter.layers = 2
# (V1LayerParameter: name 4, type 5 as an enum, blobs 6).
NEW_LAYER = {'field': 100, 'name': 1, 'type': 2, 'blobs': 7}
V1_LAYER = {'field': 2, 'name': 4, 'type': 5, 'blobs': 6}
V1_TYPES = {4: 'Convolution', 14: 'InnerProduct'}
KINDS = {'Convolution': 'conv', 'InnerProduct': 'fc'}

# caffe.proto BlobProto: legacy num 1, channels 2, height 3, width 4;
# data 5 (packed float), shape 7 (BlobShape: dim 1, packed int64),
# double_data 8 (packed double).
BLOB_LEGACY_DIMS = (1, 2, 3, 4)
BLOB_DATA, BLOB_SHAPE, BLOB_DOUBLE_DATA = 5, 7, 8


class _Truncated(Exception):
    """The message ends in the middle of a field."""


def read_varint(buf, pos):
    """Decode the varint at ``buf[pos]``: 7 bits per byte, low bits first,
    the high bit set on every byte but the last.  Returns (value, new pos).
    """
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise _Truncated()
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def iter_fields(buf):
    """Yield ``(field_number, wire_type, value)`` for each field of a
    message; the value is an int for varints, else a zero-copy memoryview.
    """
    sizes = {FIXED64: 8, FIXED32: 4}
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        field, wire_type = key >> 3, key & 7
        if wire_type == VARINT:
            value, pos = read_varint(buf, pos)
        else:
            if wire_type == LENGTH_DELIMITED:
                size, pos = read_varint(buf, pos)
            elif wire_type in sizes:
                size = sizes[wire_type]
            else:
                raise ValueError(f'unsupported wire type {wire_type}')
            if pos + size > len(buf):
                raise _Truncated()
            value, pos = buf[pos:pos + size], pos + size
        yield field, wire_type, value


def read_packed_varints(value):
    """A repeated integer field: packed (one byte string) or a single
    varint (the unpacked encoding, one field per element)."""
    if isinstance(value, int):
        return [value]
    numbers, pos = [], 0
    while pos < len(value):
        number, pos = read_varint(value, pos)
        numbers.append(number)
    return numbers


def decode_blob(buf):
    """BlobProto -> float32 array in Caffe order.

    Floats may come packed in one field or, less commonly, one field per
    value; both are little-endian bytes, so ``np.frombuffer`` reads either.
    """
    chunks, shape, legacy = [], None, {}
    for field, _, value in iter_fields(buf):
        if field == BLOB_DATA:
            chunks.append(np.frombuffer(value, '<f4'))
        elif field == BLOB_DOUBLE_DATA:
            chunks.append(np.frombuffer(value, '<f8'))
        elif field == BLOB_SHAPE:
            shape = [dim for f, _, v in iter_fields(value) if f == 1
                     for dim in read_packed_varints(v)]
        elif field in BLOB_LEGACY_DIMS:
            legacy[field] = value
    if shape is None:   # old files: 4-D num, channels, height, width
        shape = [legacy.get(field, 0) for field in BLOB_LEGACY_DIMS]
    data = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if data.size != int(np.prod(shape)):
        raise ValueError(f'a blob has {data.size} values for shape {shape}')
    # astype copies out of the file buffer, which can then be freed
    return data.astype(np.float32).reshape(shape)


def iter_caffe_layers(buf):
    """Yield ``(name, type, blobs)`` for every layer of a NetParameter, in
    the new ``layer`` or the legacy ``layers`` encoding."""
    for field, _, value in iter_fields(buf):
        for spec in (NEW_LAYER, V1_LAYER):
            if field == spec['field']:
                yield _decode_layer(value, spec)


def _decode_layer(buf, spec):
    name, layer_type, blobs = '', None, []
    for field, _, value in iter_fields(buf):
        if field == spec['name']:
            name = bytes(value).decode('utf-8')
        elif field == spec['type']:
            layer_type = (V1_TYPES.get(value, f'V1 type {value}')
                          if isinstance(value, int)
                          else bytes(value).decode('utf-8'))
        elif field == spec['blobs']:
            blobs.append(decode_blob(value))
    return name, layer_type, blobs


def read_caffemodel(path):
    """Weights of a Caffe ``.caffemodel`` (a binary NetParameter)."""
    with open(path, 'rb') as f:
        buf = memoryview(f.read())
    try:
        caffe_layers = list(iter_caffe_layers(buf))
    except _Truncated:
        raise WeightsFileError(
            f'{path!r} is truncated; download it again') from None
    except ValueError as err:   # also UnicodeDecodeError
        raise WeightsFileError(
            f'{path!r} is not a valid .caffemodel ({err})') from None
    params = []
    for name, layer_type, blobs in caffe_layers:
        if not blobs:
            continue                        # ReLU, pooling, LRN, ...
        if layer_type not in KINDS or len(blobs) != 2:
            raise WeightsFileError(
                f'{path!r}: layer {name!r} ({layer_type}, {len(blobs)} '
                f'blobs) is not a convolution or fully connected layer '
                f'with weights and biases; is this AlexNet?')
        params.append((name, KINDS[layer_type], blobs[0], blobs[1]))
    if not params:
        raise WeightsFileError(
            f'{path!r} holds no layers with weights; is it a .caffemodel '
            f'(not a .prototxt)?')
    return caffe_order_to_tf(params)


# --------------------------------------------------------------------------
# Reading any source, writing, reporting
# --------------------------------------------------------------------------

def read_source(path):
    """Layers of any supported source, in our order and layout."""
    if not os.path.isfile(path):
        raise WeightsFileError(f'{path!r} not found')
    extension = os.path.splitext(path)[1].lower()
    if extension == '.onnx':
        return read_onnx(path)
    if extension == '.caffemodel':
        return read_caffemodel(path)
    return read_weights(path)


def write(layers, path):
    """Write ``.npz`` (recommended) or Toronto ``.npy``, by extension."""
    extension = os.path.splitext(path)[1].lower()
    if extension == '.npz':
        save_npz(layers, path)
    elif extension == '.npy':
        save_toronto_npy(layers, path)
    else:
        raise WeightsFileError(
            f'{path!r}: the destination must end in .npz (recommended) or '
            f'.npy')


def summary(layers):
    """One line per layer: name, part, shape, min/max/mean."""
    lines = []
    for name, layer in layers.items():
        for part, array in layer.items():
            lines.append(f'{name:6s} {part:8s} {str(array.shape):18s} '
                         f'min {array.min():+.4f}  max {array.max():+.4f}  '
                         f'mean {array.mean():+.6f}')
    return '\n'.join(lines)


# --------------------------------------------------------------------------
# Checks: does the file load into AlexNet, and compute what the source did?
# --------------------------------------------------------------------------

def alexnet_logits(weights_path, images_nhwc):
    """Load ``weights_path`` into a fresh AlexNet graph, check that every
    variable got the file's values, and return fc8 for the images
    (BGR minus mean, NHWC)."""
    from alexnet import AlexNet, tf     # TensorFlow is slow to import
    layers = read_weights(weights_path)
    num_classes = layers['fc8']['biases'].shape[0]
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [None, 227, 227, 3])
        keep_prob = tf.placeholder_with_default(1.0, [])
        model = AlexNet(x, keep_prob, num_classes, [], weights_path)
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            model.load_initial_weights(session)
            _check_variables(session, tf.global_variables(), layers)
            return session.run(model.fc8, {x: images_nhwc})


def _check_variables(session, variables, layers):
    """Fail unless each conv*/fc* variable equals the file's array."""
    for variable in variables:
        name, _, part = variable.op.name.rpartition('/')
        if name in layers and part in layers[name]:
            if not np.array_equal(session.run(variable), layers[name][part]):
                raise AssertionError(f'{variable.op.name} was not loaded')


def onnxruntime_logits(onnx_path, images_nchw):
    """Run the ONNX model and return the output of its last Gemm (fc8).

    The zoo model ends in a Softmax; its logits are an inner value, which
    onnxruntime returns once it is declared a graph output.  The zoo also
    declares a fixed input of 1x3x224x224; our images are 227x227 (which
    AlexNet's layers turn into the same 6x6 pool5), so the declared sizes
    are made free.
    """
    import onnx
    import onnxruntime
    model = onnx.load(onnx_path)
    gemms = [n for n in model.graph.node if n.op_type == 'Gemm']
    logits = gemms[-1].output[0]
    if logits not in [o.name for o in model.graph.output]:
        model.graph.output.append(onnx.helper.make_tensor_value_info(
            logits, onnx.TensorProto.FLOAT, None))
    for value in list(model.graph.input) + list(model.graph.output):
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            dim.dim_param = f'{value.name}_{axis}'    # replaces dim_value
    del model.graph.value_info[:]       # inner sizes computed for 224x224
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=['CPUExecutionProvider'])
    feed = {session.get_inputs()[0].name: images_nchw}
    return session.run([logits], feed)[0]


def relative_difference(ours, theirs):
    """max |ours - theirs| / max |theirs|."""
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def random_images(count=2, seed=0):
    """Images with the spread of BGR-minus-mean pixels, NHWC."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-120, 135, (count, 227, 227, 3)).astype(np.float32)


def check(src, dst):
    """Prove ``dst`` works: it loads into AlexNet and, for an ONNX source
    when onnxruntime is installed, gives the same logits as the source."""
    images = random_images()
    ours = alexnet_logits(dst, images)
    print(f'loads into AlexNet: logits {ours.shape}, all finite: '
          f'{bool(np.isfinite(ours).all())}')
    if not src.lower().endswith('.onnx'):
        return True
    try:
        theirs = onnxruntime_logits(src, images.transpose(0, 3, 1, 2))
    except ImportError:
        print('onnxruntime is not installed: logits not compared')
        return True
    difference = relative_difference(ours, theirs)
    same = difference <= MAX_RELATIVE_DIFFERENCE
    print(f'logits vs onnxruntime: max|diff|/max|logit| = {difference:.2e} '
          f'({"same" if same else "DIFFERENT"}, limit '
          f'{MAX_RELATIVE_DIFFERENCE:.0e})')
    return same


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert AlexNet weights (.caffemodel, .onnx, .npy, '
                    '.npz) to .npz or Toronto .npy.')
    parser.add_argument('src')
    parser.add_argument('dst', help='ends in .npz (recommended) or .npy')
    parser.add_argument('--no-check', action='store_true',
                        help='do not load the result into AlexNet')
    args = parser.parse_args(argv)
    try:
        print(f'reading {args.src}')
        layers = read_source(args.src)
        print(summary(layers))
        write(layers, args.dst)
    except WeightsFileError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(f'wrote {args.dst}')
    if args.no_check:
        return 0
    return 0 if check(args.src, args.dst) else 1


if __name__ == '__main__':
    sys.exit(main())
