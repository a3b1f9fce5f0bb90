"""Caffe's SGD for AlexNet: momentum, weight decay and per-layer rates.

The fine-tuning recipe of Caffe's examples, to the last detail. For every
weight w of a trained layer, each step does

    v = momentum * v + learning_rate * lr_mult * (gradient + weight_decay * w)
    w = w - v

and for every bias b the same with twice the rate and no decay (Caffe's
`lr_mult: 2`, `decay_mult: 0`). `lr_mult` is 1, except for the layers that
start fresh when the others are loaded (fc8): those learn
`new_layer_lr_mult` (10x) faster, to catch up.

`caffe_sgd` builds that step as one op. It takes any TF1 optimizer
(`optimizer=tf.train.AdamOptimizer(...)` is a one-line experiment); the
default, `CaffeMomentumOptimizer`, keeps `v` as Caffe does.

Also here: `session_config` and `make_deterministic`, the session settings
of a training run.
"""
import os

from alexnet import LAYERS, PIXEL_STD, tf, variable


class CaffeMomentumOptimizer(tf.train.MomentumOptimizer):
    """SGD with momentum as Caffe computes it: v = m*v + lr*g; w -= v.

    tf.train.MomentumOptimizer keeps a = m*a + g and steps by lr*a instead.
    Both agree while the rate is constant, but Caffe's `v` already holds the
    rates of the past steps: after `--resume --learning_rate 0.001` in a run
    that used 0.01, TensorFlow's form would apply the new rate to the whole
    accumulated gradient (a step 10x too small), Caffe's only to the new one.

    TensorFlow's form with a rate of 1, fed lr*g, is Caffe's form:
    a = m*a + lr*g = v, then w -= 1*v. So this class is MomentumOptimizer
    at rate 1 with the gradients multiplied by the rate first: the update
    itself runs as TensorFlow's fused momentum kernel, one pass over each
    weight array instead of five separate element-wise ops and their
    temporaries (on a 2-core CPU: steps 2% to 7% faster, peak memory 0.25
    to 0.46 GB lower; README, Measured). The slot is named `momentum` and
    holds `v`, the step of the last update.
    """

    def __init__(self, learning_rate, momentum, name='CaffeSGD'):
        super(CaffeMomentumOptimizer, self).__init__(
            1.0, momentum, use_locking=False, name=name)
        self._caffe_rate = learning_rate

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        scaled = [(None if grad is None else
                   tf.cast(self._caffe_rate, grad.dtype.base_dtype) * grad,
                   var) for grad, var in grads_and_vars]
        return super(CaffeMomentumOptimizer, self).apply_gradients(
            scaled, global_step, name)


def caffe_sgd(loss, model, train_layers, learning_rate, momentum=0.9,
              weight_decay=0.0005, optimizer=None):
    """The training step: Caffe's SGD on the layers in `train_layers`.

    Args:
        loss: the scalar loss (mean softmax cross-entropy).
        model: the AlexNet.
        train_layers: names of the layers that learn ('conv1' .. 'fc8').
        learning_rate: the base rate, a float or a scalar tensor.
        momentum, weight_decay: Caffe's `momentum` and `weight_decay`.
        optimizer: another TF1 optimizer to use instead, e.g.
            tf.train.AdamOptimizer(1e-4); it receives the same gradients
            (rate multipliers and decay included) in one apply_gradients.

    The rate multipliers are variables (`train/<layer>_lr_mult`), set after
    the weights are loaded by `set_rate_multipliers`, and saved with the
    checkpoints. Returns the op that makes one step.
    """
    layers = [layer for layer in LAYERS if layer in train_layers]
    weights = [variable(layer, 'weights') for layer in layers]
    biases = [variable(layer, 'biases') for layer in layers]
    # Nothing below the lowest trained layer learns, so no gradient is sent
    # down from it; every trained layer above it sends one.
    senders = layers[1:]
    inputs = [model.layer_inputs[layer] for layer in senders]
    with tf.name_scope('train'):
        lr_mult, gradient_scale = rate_multipliers()
        # One backward pass gives the gradients of the weights, of the
        # biases, and of the inputs of the senders (the gradient sent down).
        gradients = tf.gradients(loss, weights + biases + inputs)
        n = len(layers)
        sent_down = dict(zip(senders, gradients[2 * n:]))
        pairs = []
        for layer, w, b, w_grad, b_grad in zip(layers, weights, biases,
                                               gradients[:n],
                                               gradients[n:2 * n]):
            # lr * lr_mult * (gradient + decay * w); the decay is added once
            # the gradient exists, not as a loss term: all layers' products
            # decay * w (244 MB) would then be made at the start of the
            # backward pass and held to its end.
            # As (lr_mult * scale) * gradient + (lr_mult * decay) * w: the
            # products of scalars are free, those of arrays are not.
            with tf.control_dependencies([w_grad]):
                w_step = ((lr_mult[layer] * gradient_scale[layer]) * w_grad +
                          (lr_mult[layer] * weight_decay) * w)
            b_step = 2.0 * lr_mult[layer] * b_grad
            # TF1 variables are read when an op runs. The gradient sent down
            # to the layer below is computed from this layer's weights, so
            # they may change only once it exists; waiting for exactly that
            # (not for every gradient) frees each gradient once applied.
            wait_for = [sent_down[layer]] if layer in sent_down else []
            with tf.control_dependencies(wait_for):
                pairs += [(tf.identity(w_step), w), (tf.identity(b_step), b)]
        if optimizer is None:
            optimizer = CaffeMomentumOptimizer(learning_rate, momentum)
        return optimizer.apply_gradients(pairs, name='sgd')


def rate_multipliers():
    """Two non-trained variables per layer, set by `set_rate_multipliers`:
    Caffe's lr_mult, and the scale of the weights' gradient (1/60**2 for a
    fresh conv1, see there; 1 elsewhere)."""
    def per_layer(name):
        return {layer: tf.Variable(1.0, trainable=False,
                                   name='%s_%s' % (layer, name))
                for layer in LAYERS}
    return per_layer('lr_mult'), per_layer('gradient_scale')


def multiplier_variable(layer, name):
    """The variable `train/<layer>_<name>` that caffe_sgd made."""
    wanted = 'train/%s_%s:0' % (layer, name)
    found = [var for var in tf.global_variables() if var.name == wanted]
    if not found:
        raise ValueError('no %s in the graph: build the step with '
                         'caffe_sgd first' % wanted)
    return found[0]


def set_rate_multipliers(session, model, new_layer_lr_mult=10.0):
    """Per-layer rates, once `load_initial_weights` has run (or not).

    Fine-tuning (some layers loaded): the fresh layers (fc8) learn
    `new_layer_lr_mult` times faster, the loaded ones at the base rate.
    From scratch (nothing loaded) every layer learns at the base rate.

    A fresh conv1 gets one more correction. Its input is in pixel units
    (std about PIXEL_STD = 60) where the other layers see unit-sized inputs,
    so alexnet.py starts it 60x smaller than He's rule. The run is then
    exactly the run of the same net on the pixels divided by 60, whose
    conv1 weights V = 60 w start at He's size, if w learns as follows.
    That net's Caffe step is
        v_V = m*v_V + lr*mult*(dL/dV + decay*V),   V -= v_V.
    With V = 60 w, dL/dV = (dL/dw) / 60 and v_V = 60 v_w, divide by 60:
        v_w = m*v_w + lr*mult*((dL/dw) / 60**2 + decay*w),   w -= v_w.
    Only the gradient term is divided by 60**2 (gradient_scale); the decay
    term and the biases (b is the same in both nets) keep their rates.
    Without it, a fresh conv1 makes steps 3,600x too large and the scratch
    run diverges in its first steps.

    A loaded conv1 learns as Caffe's does, unless its weights are of the
    size the kit's own scratch runs give it (RMS below UNIT_INPUT_CONV1_RMS):
    weights exported from such a run (tools/export_weights.py) were learnt
    with that correction, and lose it at their peril: at the full rate the
    fine-tuned run diverges within an epoch. Caffe trained its conv1 on
    pixels from gaussian weights of std 0.01, three times that threshold,
    with no such correction: Caffe's weights keep Caffe's rule.
    """
    fine_tuning = bool(model.loaded_layers)
    unit_input_conv1 = 'conv1' not in model.loaded_layers
    if not unit_input_conv1:
        rms = conv1_rms(session)
        unit_input_conv1 = rms < UNIT_INPUT_CONV1_RMS
        if unit_input_conv1:
            print('Note: conv1 of %s is of the size the kit\'s scratch runs '
                  'give it (RMS %.4f, below %s), so it keeps their learning '
                  'rule: its gradient divided by %d, as when it was trained '
                  '(see sgd.set_rate_multipliers).'
                  % (model.WEIGHTS_PATH, rms, UNIT_INPUT_CONV1_RMS,
                     PIXEL_STD ** 2))
    for layer in LAYERS:
        fresh = layer not in model.loaded_layers
        lr_mult = new_layer_lr_mult if (fine_tuning and fresh) else 1.0
        scale = (1.0 / PIXEL_STD ** 2 if layer == 'conv1' and unit_input_conv1
                 else 1.0)
        multiplier_variable(layer, 'lr_mult').load(lr_mult, session)
        multiplier_variable(layer, 'gradient_scale').load(scale, session)


#: The RMS below which a loaded conv1 counts as trained by the kit's scratch
#: rule: He's size on unit inputs divided by PIXEL_STD is 0.074 / 60 =
#: 0.0012, and such runs stay near it; Caffe's recipe starts conv1 at 0.01.
UNIT_INPUT_CONV1_RMS = 0.0035


def conv1_rms(session):
    """The root mean square of conv1's weights as they are now."""
    weights = session.run(variable('conv1', 'weights'))
    return float((weights.astype('float64') ** 2).mean() ** 0.5)


def make_deterministic():
    """Same seed, same numbers: ask TensorFlow for deterministic kernels.

    Without it, the order in which threads add up a gradient varies from run
    to run; the rounding differences grow over the steps, and two runs of
    the same seed drift apart after a few steps. On a CPU this costs nothing
    we could measure. Returns a note when determinism is not available.

    - TF 2.8+: `tf.config.experimental.enable_op_determinism()`, everywhere.
    - TF 1.14 to 2.4: the environment variable TF_DETERMINISTIC_OPS=1, which
      covers the GPU kernels (CPU runs stay close but not bit-identical).
    - TF 2.5 to 2.7: the same variable makes the fused softmax cross-entropy
      raise UnimplementedError on a GPU (its deterministic kernel came in
      2.8), so there it is set only when no GPU is visible.
    """
    import tensorflow
    enable = getattr(getattr(getattr(tensorflow, 'config', None),
                             'experimental', None),
                     'enable_op_determinism', None)
    if enable is not None:
        enable()
        return None
    major_minor = tuple(int(part) for part in
                        tensorflow.__version__.split('.')[:2])
    if (2, 5) <= major_minor < (2, 8) and _gpu_visible(tensorflow):
        return ('Note: TensorFlow %s has no deterministic softmax on a GPU; '
                'runs of the same seed may differ slightly (TF 2.8+ fixes '
                'it).' % tensorflow.__version__)
    os.environ.setdefault('TF_DETERMINISTIC_OPS', '1')
    return None


def _gpu_visible(tensorflow):
    list_devices = getattr(getattr(tensorflow, 'config', None),
                           'list_physical_devices', None)
    return bool(list_devices and list_devices('GPU'))


def session_config():
    """Settings for the training session.

    - No constant folding: TensorFlow would otherwise fold the zeros that
      initialise the momentum of each weight into constants that the session
      keeps (the size of the weights, and GPU memory on a GPU) for nothing.
      Two optimisers fold constants: Grappler (rewrite_options) and the
      classic one, whose level L0 also turns off its common-subexpression
      elimination. Neither makes a step of this graph faster.
    - allow_growth: take GPU memory as needed rather than all of it at the
      start, so that a shared course GPU serves several students.
    """
    config = tf.ConfigProto()
    rewrite = config.graph_options.rewrite_options
    rewrite.constant_folding = rewrite.OFF
    config.graph_options.optimizer_options.opt_level = tf.OptimizerOptions.L0
    config.gpu_options.allow_growth = True
    return config
