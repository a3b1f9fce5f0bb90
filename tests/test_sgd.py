"""sgd.py: Caffe's SGD step, its rate multipliers, any optimizer, the order
of the updates, and the session settings."""
import math
import os

import numpy as np
import pytest

from alexnet import LAYERS, PIXEL_STD, AlexNet, tf, variable
import sgd

NUM_CLASSES = 4


def build(train_layers, num_classes=NUM_CLASSES, optimizer=None, seed=1,
          input_scale=1.0):
    """AlexNet, its loss and caffe_sgd's step on a fresh graph; the inputs
    are float32 pixels minus the mean, multiplied by `input_scale`.
    `optimizer`: None (Caffe's SGD) or a function making one."""
    tf.reset_default_graph()
    tf.set_random_seed(seed)
    x = tf.placeholder(tf.float32, [None, 227, 227, 3], name='x')
    y = tf.placeholder(tf.float32, [None, num_classes], name='y')
    rate = tf.placeholder(tf.float32, [], name='rate')
    model = AlexNet(x * input_scale, 1.0, num_classes, list(LAYERS), '')
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(
        labels=y, logits=model.fc8))
    step = sgd.caffe_sgd(loss, model, train_layers, rate, momentum=0.9,
                         weight_decay=5e-4,
                         optimizer=optimizer() if optimizer else None)
    return dict(x=x, y=y, rate=rate, model=model, loss=loss, step=step)


def feed(g, rate=0.01, seed=0, count=3):
    rng = np.random.default_rng(seed)
    return {g['x']: rng.normal(0, 60, (count, 227, 227, 3)).astype(np.float32),
            g['y']: np.eye(NUM_CLASSES)[rng.integers(0, NUM_CLASSES, count)],
            g['rate']: rate}


def values(sess, names):
    return sess.run([variable(*name.split('/')) for name in names])


def test_one_step_is_caffes_sgd_with_rate_multipliers_and_decay():
    """Fine-tuning fc7 and fc8: weights move by lr * mult * (grad + decay *
    w), biases at 2x without decay, the fresh fc8 at 10x; others stay."""
    g = build(['fc7', 'fc8'])
    names = ['conv5/weights', 'fc7/weights', 'fc7/biases', 'fc8/weights',
             'fc8/biases']
    grads = tf.gradients(g['loss'], [variable(*n.split('/'))
                                     for n in names[1:]])
    data = feed(g)
    with tf.Session(config=sgd.session_config()) as sess:
        sess.run(tf.global_variables_initializer())
        g['model'].loaded_layers = list(LAYERS[:-1])  # fc8 is new
        sgd.set_rate_multipliers(sess, g['model'], new_layer_lr_mult=10.0)
        before = values(sess, names)
        gradients = sess.run(grads, data)
        sess.run(g['step'], data)
        after = values(sess, names)
    np.testing.assert_array_equal(after[0], before[0])  # conv5: not trained
    for name, w, w_new, grad, mult in zip(names[1:], before[1:], after[1:],
                                          gradients, [1, 2, 10, 20]):
        decay = 5e-4 * w if name.endswith('weights') else 0
        expected = w - 0.01 * mult * (grad + decay)
        np.testing.assert_allclose(w_new, expected, rtol=1e-4,
                                   atol=1e-6 * np.abs(w).max(), err_msg=name)
        assert np.abs(w_new - w).max() > 0  # it did move


def test_a_new_learning_rate_applies_to_new_gradients_only():
    """Caffe keeps v = m*v + lr*(g + decay*w): after a change of rate
    between two steps (--resume --learning_rate), the momentum carries the
    old rate's step. TensorFlow's MomentumOptimizer would apply the new
    rate to the accumulated gradient: here a second step 10x too small in
    its momentum part."""
    g = build(['fc8'])
    w = variable('fc8', 'weights')
    grad = tf.gradients(g['loss'], [w])[0]
    with tf.Session(config=sgd.session_config()) as sess:
        sess.run(tf.global_variables_initializer())
        sgd.set_rate_multipliers(sess, g['model'])
        w0 = sess.run(w)
        g0 = sess.run(grad, feed(g))
        sess.run(g['step'], feed(g, rate=0.01))
        w1 = sess.run(w)
        g1 = sess.run(grad, feed(g, seed=1))
        sess.run(g['step'], feed(g, rate=0.001, seed=1))
        w2 = sess.run(w)
    v1 = 0.01 * (g0 + 5e-4 * w0)
    np.testing.assert_allclose(w1, w0 - v1, rtol=1e-5, atol=1e-9)
    v2 = 0.9 * v1 + 0.001 * (g1 + 5e-4 * w1)
    np.testing.assert_allclose(w2, w1 - v2, rtol=1e-4, atol=1e-8)
    tensorflow_form = w1 - 0.001 * (0.9 * (g0 + 5e-4 * w0) + g1 + 5e-4 * w1)
    assert np.abs(tensorflow_form - w2).max() > 100 * np.abs(
        (w1 - v2) - w2).max()


def test_another_optimizer_gets_one_apply_gradients_call():
    """Adam in place of Caffe's SGD: one step is Adam's formula on the
    gradients caffe_sgd hands it, and its step counter (beta1_power)
    advances once per step, not once per layer."""
    g = build(['fc7', 'fc8'],
              optimizer=lambda: tf.train.AdamOptimizer(learning_rate=0.001))
    names = ['fc7/weights', 'fc7/biases', 'fc8/weights', 'fc8/biases']
    variables = [variable(*n.split('/')) for n in names]
    grads = tf.gradients(g['loss'], variables)
    beta1_power, = [v for v in tf.global_variables()
                    if 'beta1_power' in v.name]
    data = feed(g)
    with tf.Session(config=sgd.session_config()) as sess:
        sess.run(tf.global_variables_initializer())
        sgd.set_rate_multipliers(sess, g['model'])
        before = sess.run(variables)
        gradients = sess.run(grads, data)
        sess.run(g['step'], data)
        after = sess.run(variables)
        assert sess.run(beta1_power) == pytest.approx(0.9 ** 2)
    for name, w, w_new, grad in zip(names, before, after, gradients):
        handed = (grad + 5e-4 * w if name.endswith('weights') else 2 * grad)
        m, v = 0.1 * handed, 0.001 * handed ** 2
        lr_t = 0.001 * math.sqrt(1 - 0.999) / (1 - 0.9)
        expected = w - lr_t * m / (np.sqrt(v) + 1e-8)
        np.testing.assert_allclose(w_new, expected, rtol=1e-3, atol=1e-7,
                                   err_msg=name)


def ancestors(ops):
    """Every op that must run before `ops` (data and control inputs)."""
    seen, stack = set(), list(ops)
    while stack:
        op = stack.pop()
        if op not in seen:
            seen.add(op)
            stack.extend(t.op for t in op.inputs)
            stack.extend(op.control_inputs)
    return seen


def updates_of(var, step_ops):
    """The ops of the step that write `var` (Assign*/Apply*)."""
    return [op for op in step_ops if op.inputs and op.inputs[0].op is var
            and (op.type.startswith('Assign') or op.type.startswith('Apply'))]


@pytest.mark.parametrize('train_layers, optimizer', [
    (list(LAYERS), None), (['conv1', 'fc8'], None),
    (['fc6', 'fc7', 'fc8'], None), (['conv2', 'conv4'], None),
    (list(LAYERS), 'adam')])
def test_no_variable_changes_before_every_op_of_the_step_reading_it(
        train_layers, optimizer):
    """TF1 variables are read when an op runs: an update that could run
    before an op reading the variable (through its `read` alias, or the
    Split of a grouped conv) would leak the new value into the step."""
    g = build(train_layers, optimizer=(
        lambda: tf.train.AdamOptimizer(1e-3)) if optimizer else None)
    correct = tf.equal(tf.argmax(g['model'].fc8, 1), tf.argmax(g['y'], 1))
    step = ancestors([g['step'], g['loss'].op, correct.op])
    for layer in train_layers:
        for kind in ('weights', 'biases'):
            var = variable(layer, kind).op
            update, = updates_of(var, step)
            readers, aliases = [], [var]
            while aliases:
                for tensor in aliases.pop().outputs:
                    for op in tensor.consumers():
                        if op is update or op not in step:
                            continue
                        if op.type in ('Identity', 'Split'):
                            aliases.append(op)
                        else:
                            readers.append(op)
            assert readers, (layer, kind)
            before = ancestors([update])
            unordered = [op.name for op in readers if op not in before]
            assert not unordered, (layer, kind, unordered)


def test_a_fresh_conv1_learns_as_the_same_net_on_inputs_divided_by_60():
    """The scratch correction is exact: conv1 on pixels, started 60x
    smaller, with its gradient term divided by 60**2, takes the steps of
    conv1 on pixels/60 started at He's size with no correction: weights
    60x apart, biases equal, decay included, over several momentum steps."""
    def train(input_scale, conv1_scale, gradient_scale):
        g = build(['conv1', 'fc8'], input_scale=input_scale)
        w, b = variable('conv1', 'weights'), variable('conv1', 'biases')
        with tf.Session(config=sgd.session_config()) as sess:
            sess.run(tf.global_variables_initializer())
            sgd.set_rate_multipliers(sess, g['model'])
            w.load(sess.run(w) * conv1_scale, sess)
            b.load(np.linspace(-0.1, 0.1, 96), sess)
            sgd.multiplier_variable('conv1', 'gradient_scale').load(
                gradient_scale, sess)
            start = sess.run(w)
            for i in range(3):
                sess.run(g['step'], feed(g, rate=0.01, seed=i))
            return start, sess.run(w), sess.run(b)
    start_a, w_a, b_a = train(1.0, 1.0, 1.0 / PIXEL_STD ** 2)  # the kit
    start_b, w_b, b_b = train(1.0 / PIXEL_STD, PIXEL_STD, 1.0)  # unit inputs
    np.testing.assert_allclose(start_a * PIXEL_STD, start_b, rtol=1e-6)
    assert np.abs(w_a - start_a).max() > 1e-3 * np.abs(start_a).max()
    # The same three steps, to float32 round-off, measured against the
    # steps themselves (elementwise tolerances failed on TF 2.12 with
    # oneDNN, whose kernels round differently at the two input scales): a
    # wrong rule differs by 3,600x, a frozen conv1 by all of it.
    steps_a, steps_b = (w_a - start_a) * PIXEL_STD, w_b - start_b
    error = np.linalg.norm(steps_a - steps_b) / np.linalg.norm(steps_b)
    print('relative difference of the steps: %.2e' % error)
    assert error < 0.01
    np.testing.assert_allclose(b_a, b_b, rtol=2e-3, atol=1e-5)


@pytest.mark.parametrize('loaded, conv1_std, conv1_scale', [
    ([], None, 1 / 3600.0),                   # scratch
    (list(LAYERS[:-1]), 0.05, 1.0),           # Caffe-sized conv1: Caffe's rule
    (list(LAYERS[:-1]), 0.0015, 1 / 3600.0),  # exported from a scratch run
    (['fc6', 'fc7'], 0.05, 1 / 3600.0)])      # conv1 fresh, not loaded
def test_rate_multipliers_of_each_mode(loaded, conv1_std, conv1_scale,
                                      capsys):
    g = build(list(LAYERS))
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        if conv1_std:
            variable('conv1', 'weights').load(np.random.default_rng(0).normal(
                0, conv1_std, (11, 11, 3, 96)), sess)
        g['model'].loaded_layers = loaded
        sgd.set_rate_multipliers(sess, g['model'], new_layer_lr_mult=10.0)
        lr = {layer: sess.run(sgd.multiplier_variable(layer, 'lr_mult'))
              for layer in LAYERS}
        scale = sess.run(sgd.multiplier_variable('conv1', 'gradient_scale'))
    expected = {layer: 10.0 if loaded and layer not in loaded else 1.0
                for layer in LAYERS}
    assert lr == expected
    assert scale == pytest.approx(conv1_scale)
    # A loaded conv1 that keeps the scratch rule says so; no other case does.
    noted = 'keeps their learning rule' in capsys.readouterr().out
    assert noted == ('conv1' in loaded and conv1_scale != 1.0)


def test_the_first_loss_is_close_to_that_of_a_guess():
    """fc8 starts as in Caffe's fine-tuning examples (gaussian 0.01, bias
    0), so the first loss is near ln(num_classes) = 4.6, not the 8.7 to 17
    of a fc8 started at He's size. (A scratch net's fc7 outputs are a few
    units large, so its logits are not tiny: ln(102) + 1 to 3.)"""
    g = build(['fc8'], num_classes=102)
    rng = np.random.default_rng(0)
    images = rng.normal(0, 60, (16, 227, 227, 3)).astype(np.float32)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        weights, biases = values(sess, ['fc8/weights', 'fc8/biases'])
        first = sess.run(g['loss'], {g['x']: images,
                                     g['y']: np.eye(102)[np.arange(16)]})
    assert weights.std() == pytest.approx(0.01, rel=0.02)
    assert not biases.any()
    assert math.log(102) - 0.5 < first < math.log(102) + 3.5


def test_the_session_keeps_no_constant_the_size_of_a_weight():
    """Constant folding would turn the zeros that initialise fc7's
    momentum (67 MB) into a constant the session keeps; session_config
    turns it off, so they are filled when needed and freed."""
    build(['fc7', 'fc8'])
    metadata = tf.RunMetadata()
    with tf.Session(config=sgd.session_config()) as sess:
        sess.run(tf.global_variables_initializer(), run_metadata=metadata,
                 options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE))
    large = {node.node_name: node.timeline_label.split('= ')[-1].split('(')[0]
             for device in metadata.step_stats.dev_stats
             for node in device.node_stats if any(
                 output.tensor_description.allocation_description
                 .requested_bytes > 50e6 for output in node.output)}
    # (With a default session, TF 2.21 makes this node a 'Const'.)
    assert large['fc7/weights/CaffeSGD/Initializer/zeros'] == 'Fill'


class FakeTensorFlow(object):
    """A stand-in for the tensorflow module of an older version."""

    def __init__(self, version, gpus):
        self.__version__ = version
        self.config = type('config', (), {
            'list_physical_devices': staticmethod(lambda kind: gpus),
            'experimental': None})


@pytest.mark.parametrize('version, gpus, sets_variable', [
    ('1.15.5', [], True), ('2.4.1', ['GPU:0'], True),
    ('2.6.0', ['GPU:0'], False), ('2.6.0', [], True)])
def test_determinism_switch_only_where_it_is_safe(monkeypatch, version, gpus,
                                                  sets_variable):
    import sys
    monkeypatch.setitem(sys.modules, 'tensorflow',
                        FakeTensorFlow(version, gpus))
    monkeypatch.delenv('TF_DETERMINISTIC_OPS', raising=False)
    note = sgd.make_deterministic()
    assert (os.environ.get('TF_DETERMINISTIC_OPS') == '1') == sets_variable
    assert (note is not None) == (not sets_variable)
