"""tools/convert_weights.py: Caffe and ONNX weights become ours, exactly.

* A .caffemodel is written here in the real protobuf wire format (a small
  encoder below), in the new ``layer`` and the legacy ``layers`` encoding,
  from known random weights; the converted arrays must equal the known
  weights after the layout changes, computed here independently.
* A bvlc_alexnet-shaped ONNX graph with random weights is built with the
  onnx helper API and run by onnxruntime; the converted weights in our
  TensorFlow AlexNet must give the same logits.
"""
import numpy as np
import pytest

import convert_weights as convert    # conftest.py puts tools/ on sys.path
import weights
from weights import WeightsFileError

NUM_CLASSES = 10

# bvlc_alexnet in Caffe's order: conv (out, in/group, kh, kw), fc (out, in).
CAFFE_SHAPES = {
    'conv1': (96, 3, 11, 11),
    'conv2': (256, 48, 5, 5),
    'conv3': (384, 256, 3, 3),
    'conv4': (384, 192, 3, 3),
    'conv5': (256, 192, 3, 3),
    'fc6': (4096, 9216),
    'fc7': (4096, 4096),
    'fc8': (NUM_CLASSES, 4096),
}


@pytest.fixture(scope='module')
def caffe_weights():
    """Random AlexNet weights in Caffe order, scaled as He et al. so that
    activations neither vanish nor explode (conv1 also by the pixel spread)."""
    rng = np.random.default_rng(0)
    params = {}
    for name, shape in CAFFE_SHAPES.items():
        fan_in = np.prod(shape[1:])
        scale = np.sqrt(2.0 / fan_in) / (70.0 if name == 'conv1' else 1.0)
        params[name] = (
            (rng.standard_normal(shape) * scale).astype(np.float32),
            (rng.standard_normal(shape[0]) * 0.1).astype(np.float32))
    return params


def expected_tf_layers(params):
    """The layout changes, written independently of the converter: by
    einsum for conv, and for fc6 by the index formula itself,
    row h*6*256 + w*256 + c (ours) = row c*36 + h*6 + w (Caffe)."""
    layers = {}
    for name, (w, b) in params.items():
        if name.startswith('conv'):
            w = np.einsum('oihw->hwio', w)
        else:
            w = w.T
        if name == 'fc6':
            h, w_, c = np.meshgrid(np.arange(6), np.arange(6), np.arange(256),
                                   indexing='ij')
            ours = np.empty_like(w)
            ours[(h * 6 * 256 + w_ * 256 + c).ravel()] = \
                w[(c * 36 + h * 6 + w_).ravel()]
            w = ours
        layers[name] = {'weights': w, 'biases': b}
    return layers


def assert_layers_equal(got, expected):
    assert list(got) == list(expected)
    for name in expected:
        for part in weights.PARTS:
            assert got[name][part].dtype == np.float32
            np.testing.assert_array_equal(got[name][part],
                                          expected[name][part],
                                          err_msg=f'{name}/{part}')


# --------------------------------------------------------------------------
# A tiny protobuf encoder: the inverse of the converter's reader
# --------------------------------------------------------------------------

def varint(number):
    out = bytearray()
    while True:
        low, number = number & 0x7F, number >> 7
        out.append(low | (0x80 if number else 0))
        if not number:
            return bytes(out)


def varint_field(number, value):
    return varint(number << 3 | 0) + varint(value)


def bytes_field(number, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def blob(array, legacy):
    """BlobProto: data (5, packed float) and shape (7) or, in legacy files,
    num/channels/height/width (1-4) padded with leading 1s as Caffe did."""
    if legacy:
        dims = (1,) * (4 - array.ndim) + array.shape
        header = b''.join(varint_field(f, d) for f, d in zip((1, 2, 3, 4), dims))
    else:
        header = bytes_field(7, bytes_field(1, b''.join(map(varint,
                                                              array.shape))))
    return header + bytes_field(5, array.astype('<f4').tobytes())


def caffemodel(params, legacy):
    """NetParameter with AlexNet's layers: new style ``layer`` (100, type a
    string, blobs 7) or legacy ``layers`` (2, name 4, type enum 5, blobs 6).
    Layers without weights are included, as in the real file."""
    def layer(name, layer_type, enum, blobs=()):
        if legacy:
            body = (bytes_field(4, name) + varint_field(5, enum)
                    + b''.join(bytes_field(6, blob(b, True)) for b in blobs))
            return bytes_field(2, body)
        body = (bytes_field(1, name) + bytes_field(2, layer_type)
                + b''.join(bytes_field(7, blob(b, False)) for b in blobs))
        return bytes_field(100, body)

    net = [bytes_field(1, 'CaffeNet'), layer('data', 'Data', 5)]
    for name, (w, b) in params.items():
        if name.startswith('conv'):
            net.append(layer(name, 'Convolution', 4, (w, b)))
        else:
            w_legacy = w.reshape(1, 1, *w.shape) if legacy else w
            net.append(layer(name, 'InnerProduct', 14, (w_legacy, b)))
        net.append(layer('relu' + name[-1], 'ReLU', 18))
    return b''.join(net)


# --------------------------------------------------------------------------
# Caffe
# --------------------------------------------------------------------------

@pytest.mark.parametrize('legacy', [False, True], ids=['layer', 'V1layers'])
def test_caffemodel(tmp_path, caffe_weights, legacy):
    path = tmp_path / 'bvlc_alexnet.caffemodel'
    path.write_bytes(caffemodel(caffe_weights, legacy))
    got = convert.read_source(str(path))
    assert_layers_equal(got, expected_tf_layers(caffe_weights))


def test_blob_encodings():
    """Unpacked floats (one field per value), double_data, legacy dims."""
    values = np.arange(6, dtype=np.float32)
    unpacked = b''.join(varint(5 << 3 | 5) + v.tobytes() for v in values)
    legacy = varint_field(1, 2) + varint_field(2, 3)       # num 2, channels 3
    got = convert.decode_blob(memoryview(
        legacy + varint_field(3, 1) + varint_field(4, 1) + unpacked))
    np.testing.assert_array_equal(got, values.reshape(2, 3, 1, 1))
    doubles = bytes_field(8, values.astype('<f8').tobytes())
    got = convert.decode_blob(memoryview(
        bytes_field(7, bytes_field(1, varint(6))) + doubles))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, values)


def test_truncated_caffemodel(tmp_path, caffe_weights):
    small = {'conv1': caffe_weights['conv1']}
    data = caffemodel(small, legacy=False)
    path = tmp_path / 'bvlc_alexnet.caffemodel'
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(WeightsFileError, match='truncated'):
        convert.read_source(str(path))


def test_text_prototxt_is_not_a_caffemodel(tmp_path):
    path = tmp_path / 'deploy.caffemodel'
    path.write_bytes(b'name: "AlexNet"\nlayer {\n  name: "data"\n}\n')
    with pytest.raises(WeightsFileError):
        convert.read_source(str(path))


def test_command_line_caffemodel_to_npy_and_npz(tmp_path, caffe_weights,
                                                capsys):
    src = tmp_path / 'bvlc_alexnet.caffemodel'
    src.write_bytes(caffemodel(caffe_weights, legacy=True))
    expected = expected_tf_layers(caffe_weights)
    for dst in (tmp_path / 'alexnet.npz', tmp_path / 'alexnet.npy'):
        assert convert.main([str(src), str(dst), '--no-check']) == 0
        assert_layers_equal(weights.read_weights(dst), expected)
    assert np.load(tmp_path / 'alexnet.npy', allow_pickle=True).item()[
        'fc6'][0].shape == (9216, 4096)               # Toronto layout
    printed = capsys.readouterr().out
    assert 'fc6    weights  (9216, 4096)' in printed and 'mean' in printed


def test_command_line_reports_errors(tmp_path, capsys):
    assert convert.main([str(tmp_path / 'nothing.caffemodel'),
                         str(tmp_path / 'x.npz'), '--no-check']) == 1
    assert 'not found' in capsys.readouterr().err


def test_npy_to_npz_drops_the_pickle(tmp_path):
    layers = {'conv1': {'weights': np.ones((11, 11, 3, 96), np.float32),
                        'biases': np.zeros(96, np.float32)}}
    src, dst = tmp_path / 'bvlc_alexnet.npy', tmp_path / 'bvlc_alexnet.npz'
    weights.save_toronto_npy(layers, src)
    assert convert.main([str(src), str(dst), '--no-check']) == 0
    np.load(dst, allow_pickle=False)           # no pickle left inside
    assert_layers_equal(weights.read_weights(dst), layers)


def test_unknown_destination(tmp_path):
    with pytest.raises(WeightsFileError, match='.npz'):
        convert.write({}, str(tmp_path / 'weights.h5'))


# --------------------------------------------------------------------------
# ONNX: same logits as onnxruntime
# --------------------------------------------------------------------------

def alexnet_onnx(params, path):
    """bvlc_alexnet as the ONNX model zoo ships it (opset 9, initializers
    conv1_w_0 ... fc8_b_0, NCHW BGR-minus-mean input of a declared fixed
    size, softmax output)."""
    onnx = pytest.importorskip('onnx')
    from onnx import TensorProto, helper, numpy_helper
    nodes, initializers = [], []

    def add(op, inputs, output, **attributes):
        nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output

    def layer(x, name, op, **attributes):
        w, b = params[name]
        initializers.extend([numpy_helper.from_array(w, f'{name}_w_0'),
                             numpy_helper.from_array(b, f'{name}_b_0')])
        return add(op, [x, f'{name}_w_0', f'{name}_b_0'], f'{name}_1',
                   **attributes)

    def conv(x, name, kernel, stride, pad, group=1):
        x = layer(x, name, 'Conv', kernel_shape=[kernel] * 2,
                  strides=[stride] * 2, pads=[pad] * 4, group=group)
        return add('Relu', [x], f'{name}_relu')

    def lrn(x, name):
        return add('LRN', [x], name, size=5, alpha=1e-4, beta=0.75, bias=1.0)

    def pool(x, name):
        return add('MaxPool', [x], name, kernel_shape=[3, 3], strides=[2, 2])

    def fc(x, name, relu=True):
        x = layer(x, name, 'Gemm', transB=1)
        if relu:
            x = add('Relu', [x], f'{name}_relu')
            x = add('Dropout', [x], f'{name}_drop', ratio=0.5)
        return x

    x = pool(lrn(conv('data_0', 'conv1', 11, 4, 0), 'norm1'), 'pool1')
    x = pool(lrn(conv(x, 'conv2', 5, 1, 2, group=2), 'norm2'), 'pool2')
    x = conv(x, 'conv3', 3, 1, 1)
    x = conv(x, 'conv4', 3, 1, 1, group=2)
    x = pool(conv(x, 'conv5', 3, 1, 1, group=2), 'pool5')
    x = add('Flatten', [x], 'flatten', axis=1)
    x = fc(fc(fc(x, 'fc6'), 'fc7'), 'fc8', relu=False)
    add('Softmax', [x], 'prob_1')
    # The zoo declares one 224x224 image; the tool must still feed 227x227.
    graph = helper.make_graph(
        nodes, 'bvlcalexnet', [helper.make_tensor_value_info(
            'data_0', TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info('prob_1', TensorProto.FLOAT,
                                       [1, NUM_CLASSES])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 9)])
    model.ir_version = 4            # as old as the zoo's; any runtime reads it
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_onnx_to_tensorflow_gives_the_same_logits(tmp_path, caffe_weights):
    pytest.importorskip('onnxruntime')
    pytest.importorskip('alexnet')
    src, dst = tmp_path / 'bvlcalexnet-9.onnx', tmp_path / 'alexnet.npz'
    alexnet_onnx(caffe_weights, src)

    layers = convert.read_source(str(src))
    assert_layers_equal(layers, expected_tf_layers(caffe_weights))
    convert.write(layers, str(dst))

    images = convert.random_images(count=3)                     # NHWC
    ours = convert.alexnet_logits(str(dst), images)
    theirs = convert.onnxruntime_logits(
        str(src), np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    assert ours.shape == theirs.shape == (3, NUM_CLASSES)
    assert np.abs(theirs).max() > 1e-3             # not trivially all zero
    assert convert.relative_difference(ours, theirs) <= 1e-4
