"""The AlexNet graph: shapes, equality with Caffe's net, weight loading."""

import numpy as np
import pytest

from alexnet import AlexNet, LAYERS, tf
import reference_alexnet
import weights

SHAPES = {'conv1': (11, 11, 3, 96), 'conv2': (5, 5, 48, 256),
          'conv3': (3, 3, 256, 384), 'conv4': (3, 3, 192, 384),
          'conv5': (3, 3, 192, 256), 'fc6': (9216, 4096),
          'fc7': (4096, 4096), 'fc8': (4096, 1000)}


#: How much larger than He's rule conv1 and conv2 are drawn, so that their
#: outputs are as large as in Caffe's trained net (tens to hundreds) and the
#: LRN after them divides them by up to 2: a mistake in LRN's alpha or
#: window then changes the logits by far more than the test's tolerance.
LRN_SCALE = {'conv1': 60.0, 'conv2': 30.0}


def random_layers(num_classes=1000, seed=0):
    """Random weights shaped like bvlc_alexnet.npy, with conv1 and conv2
    large enough to exercise LRN (LRN_SCALE)."""
    rng = np.random.default_rng(seed)
    layers = {}
    for name, shape in SHAPES.items():
        if name == 'fc8':
            shape = (4096, num_classes)
        fan_in = int(np.prod(shape[:-1]))
        scale = (np.sqrt(2.0 / fan_in) / (60.0 if name == 'conv1' else 1.0)
                 * LRN_SCALE.get(name, 1.0))
        layers[name] = {
            'weights': (rng.standard_normal(shape) * scale).astype(np.float32),
            'biases': (rng.standard_normal(shape[-1]) * 0.1).astype(np.float32)}
    return layers


def build(num_classes=1000, skip_layer=(), weights_path='DEFAULT'):
    tf.reset_default_graph()
    x = tf.placeholder(tf.float32, [None, 227, 227, 3])
    return AlexNet(x, 1.0, num_classes, list(skip_layer), weights_path)


def variable_value(session, name):
    return session.run([v for v in tf.global_variables() if v.name == name][0])


def test_graph_shapes_follow_caffe():
    model = build(num_classes=102)
    assert model.pool5.shape.as_list() == [None, 6, 6, 256]
    assert model.fc6.shape.as_list() == [None, 4096]
    assert model.fc7.shape.as_list() == [None, 4096]
    assert model.fc8.shape.as_list() == [None, 102]
    graph = tf.get_default_graph()
    assert graph.get_tensor_by_name('conv1/relu:0').shape.as_list() == [None, 55, 55, 96]
    assert graph.get_tensor_by_name('pool1:0').shape.as_list() == [None, 27, 27, 96]
    assert graph.get_tensor_by_name('pool2:0').shape.as_list() == [None, 13, 13, 256]
    expected = dict(SHAPES, fc8=(4096, 102))
    shapes = model.variable_shapes()
    for layer in LAYERS:
        assert shapes[layer]['weights'] == expected[layer]
        assert shapes[layer]['biases'] == (expected[layer][-1],)
    names = sorted(v.name for v in tf.global_variables())
    assert names == sorted('%s/%s:0' % (l, k) for l in LAYERS
                           for k in ('weights', 'biases'))


@pytest.fixture(scope='module')
def weights_file(tmp_path_factory):
    """A bvlc_alexnet.npy in the Toronto layout, with random values."""
    path = str(tmp_path_factory.mktemp('weights') / 'random_alexnet.npy')
    layers = random_layers()
    np.save(path, {name: [v['weights'], v['biases']]
                   for name, v in layers.items()}, allow_pickle=True)
    return path, layers


def test_logits_equal_independent_caffe_reference(weights_file):
    path, layers = weights_file
    model = build(num_classes=1000, weights_path=path)
    images = np.random.default_rng(1).normal(0, 60, (3, 227, 227, 3)).astype(np.float32)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        model.load_initial_weights(sess)
        logits = sess.run(model.fc8, {model.X: images})
    expected = reference_alexnet.forward(images, layers)
    error = np.abs(logits - expected).max() / np.abs(expected).max()
    assert error <= 1e-4, error
    # A different picture gives different logits: the check is not vacuous.
    assert np.abs(expected[0] - expected[1]).max() > 0.1 * np.abs(expected).max()
    # Nor is it for LRN: Caffe's alpha not divided by the window, or a
    # window of 3, would miss the tolerance by a wide margin.
    for mistake in (dict(lrn_alpha=5e-4), dict(lrn_size=3)):
        wrong = reference_alexnet.forward(images, layers, **mistake)
        miss = np.abs(logits - wrong).max() / np.abs(wrong).max()
        assert miss > 30 * 1e-4, (mistake, miss)


def test_loading_skips_fc8_and_sets_every_other_layer(weights_file):
    path, layers = weights_file
    model = build(num_classes=102, skip_layer=['fc8'], weights_path=path)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        fresh_fc8 = variable_value(sess, 'fc8/weights:0')
        model.load_initial_weights(sess)
        for layer in LAYERS[:-1]:
            for kind in ('weights', 'biases'):
                np.testing.assert_array_equal(
                    variable_value(sess, '%s/%s:0' % (layer, kind)),
                    layers[layer][kind])
        np.testing.assert_array_equal(variable_value(sess, 'fc8/weights:0'),
                                      fresh_fc8)
        assert model.loaded_layers == list(LAYERS[:-1])
        # Fed, not baked in: the graph holds no 233 MB of constants.
        assert tf.get_default_graph().as_graph_def().ByteSize() < 1e6


def test_shape_mismatch_names_layer_shapes_and_fix(weights_file):
    path, _ = weights_file
    model = build(num_classes=102, skip_layer=[], weights_path=path)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        with pytest.raises(weights.WeightsFileError) as error:
            model.load_initial_weights(sess)
    message = str(error.value)
    assert 'fc8' in message and '1000' in message and '102' in message
    assert 'skip_layer' in message


def test_missing_weights_file_says_where_to_get_it(tmp_path):
    model = build(num_classes=102, skip_layer=['fc8'],
                  weights_path=str(tmp_path / 'bvlc_alexnet.npy'))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        with pytest.raises(weights.WeightsFileError) as error:
            model.load_initial_weights(sess)
    assert 'bvlc_alexnet.npy.md' in str(error.value)


def test_scratch_needs_no_weights_file(tmp_path):
    model = build(num_classes=4, skip_layer=LAYERS,
                  weights_path=str(tmp_path / 'absent.npy'))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        model.load_initial_weights(sess)
    assert model.loaded_layers == []


def test_fresh_initialisation_keeps_activations_unit_sized():
    """The scratch initialisation: pixel-sized input, unit-sized layers."""
    model = build(num_classes=102)
    images = np.random.default_rng(2).normal(0, 60, (4, 227, 227, 3)).astype(np.float32)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        fc7, logits = sess.run([model.fc7, model.fc8], {model.X: images})
    assert 0.1 < np.sqrt((fc7 ** 2).mean()) < 10
    assert 0.1 < logits.std() < 10


def test_the_installed_tensorflow_version_is_read_without_importing_it():
    # alexnet.py decides on oneDNN from it before TensorFlow loads.
    import tensorflow
    import alexnet
    major, minor = tensorflow.__version__.split('.')[:2]
    assert alexnet.installed_tensorflow_version() == (int(major), int(minor))
