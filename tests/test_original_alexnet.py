"""benchmarks/original_alexnet.py, the benchmark's baseline: the same
network as the kit's, trained by plain gradient descent, its weights loaded
by var.assign."""
import os
import sys

import numpy as np

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'benchmarks')
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

from alexnet import AlexNet, LAYERS, tf, variable  # noqa: E402
from original_alexnet import (OriginalAlexNet,  # noqa: E402
                              build_training_graph)
from weights import save_toronto_npy  # noqa: E402

NUM_CLASSES = 10


def random_images(count, seed=0):
    """float32 images minus a mean, as the original feeds them."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-120, 130, (count, 227, 227, 3)).astype(np.float32)


def fresh_graph(seed=0):
    """A new default graph with a seed: the tests of other modules may have
    turned on TensorFlow's determinism, which refuses unseeded random ops."""
    tf.reset_default_graph()
    tf.set_random_seed(seed)


def test_it_is_the_kits_network_with_the_same_weights():
    """Same variables and shapes, and with the kit's weights the same
    logits: the benchmark compares the training around one network."""
    images = random_images(2)
    fresh_graph()
    x = tf.placeholder(tf.float32, [None, 227, 227, 3])
    kit = AlexNet(x, 1.0, NUM_CLASSES, skip_layer=list(LAYERS))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        arrays = {(layer, kind): sess.run(variable(layer, kind))
                  for layer in LAYERS for kind in ('weights', 'biases')}
        expected = sess.run(kit.fc8, {x: images})
    fresh_graph()
    x = tf.placeholder(tf.float32, [None, 227, 227, 3])
    original = OriginalAlexNet(x, 1.0, NUM_CLASSES, skip_layer=[])
    shapes = {tuple(v.name[:-2].split('/')): tuple(v.shape.as_list())
              for v in tf.global_variables()}
    assert shapes == {key: value.shape for key, value in arrays.items()}
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for (layer, kind), value in arrays.items():
            variable(layer, kind).load(value, sess)
        logits = sess.run(original.fc8, {x: images})
    assert np.abs(expected).max() > 1e-3  # not trivially equal zeros
    np.testing.assert_allclose(logits, expected, rtol=1e-4,
                               atol=1e-4 * np.abs(expected).max())


def test_weights_load_by_assign_as_constants(tmp_path):
    """The original's loading: the file's arrays end in the variables and,
    as constants, in the graph; layers in skip_layer keep theirs."""
    rng = np.random.default_rng(1)
    layers = {name: {'weights': rng.standard_normal(shape, np.float32),
                     'biases': rng.standard_normal(shape[-1:], np.float32)}
              for name, shape in (('conv1', (11, 11, 3, 96)),
                                  ('conv2', (5, 5, 48, 256)))}
    path = str(tmp_path / 'two_layers.npy')
    save_toronto_npy(layers, path)
    fresh_graph()
    x = tf.placeholder(tf.float32, [None, 227, 227, 3])
    model = OriginalAlexNet(x, 1.0, NUM_CLASSES, ['conv2', 'fc8'], path)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        conv2_before = sess.run(variable('conv2', 'weights'))
        size_before = sess.graph.as_graph_def().ByteSize()
        model.load_initial_weights(sess)
        for kind in ('weights', 'biases'):
            np.testing.assert_array_equal(sess.run(variable('conv1', kind)),
                                          layers['conv1'][kind])
        np.testing.assert_array_equal(sess.run(variable('conv2', 'weights')),
                                      conv2_before)
        grown = sess.graph.as_graph_def().ByteSize() - size_before
    assert grown >= layers['conv1']['weights'].nbytes


def test_a_step_is_plain_gradient_descent():
    """w -= learning_rate * gradient on the trained layers, nothing else:
    no momentum (the second step would carry 0.9 of the first), no weight
    decay, no rate multipliers (fc8 and the biases learn at the base rate).

    One trained layer: with two, the original's apply_gradients may update
    fc8 in place before fc7's gradient, which reads fc8's weights, is
    computed (TF1 variables are read when an op runs, and nothing orders
    the two). Which comes first depends on the kernels' timing: with
    oneDNN on, this test failed in one of two suite runs with fc7 trained
    too. The kit's caffe_sgd orders each update after the gradient it
    sends down."""
    rate = 0.01
    fresh_graph()
    graph = build_training_graph(NUM_CLASSES, ['fc8'], rate)
    trained = graph['var_list']
    assert sorted(v.name for v in trained) == ['fc8/biases:0',
                                               'fc8/weights:0']
    gradients = tf.gradients(graph['loss'], trained)
    labels = np.eye(NUM_CLASSES, dtype=np.float32)[[1, 7]]
    feed = {graph['x']: random_images(2, seed=2), graph['y']: labels,
            graph['keep_prob']: 1.0}
    conv1 = variable('conv1', 'weights')
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        conv1_before = sess.run(conv1)
        for _ in range(2):
            before, grads = sess.run([trained, gradients], feed)
            sess.run(graph['train_op'], feed)
            after = sess.run(trained)
            for w0, g, w1 in zip(before, grads, after):
                assert np.abs(g).max() > 0
                np.testing.assert_allclose(w1, w0 - rate * g, rtol=1e-5,
                                           atol=1e-7)
        np.testing.assert_array_equal(sess.run(conv1), conv1_before)
