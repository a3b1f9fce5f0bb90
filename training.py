"""The machinery shared by finetune.py and finetune_pil.py.

The scripts keep what a student edits: the configuration block and the
`model.load_initial_weights(sess)` line. Everything else is here, in the
order a run uses it:

    configure()     command-line overrides of the config block, --help
    check_inputs()  lists, images and weights present? One message if not.
    open_data()     the training and validation ImageDataGenerators
    build_graph()   AlexNet, loss, accuracy, the SGD step
    train()         the epochs: train, validate, save_checkpoint, history

What a run writes into `checkpoint_path`:
    epoch-N.*       the checkpoint of epoch N (the last few are kept)
    best.*          the checkpoint with the best validation accuracy
    history.csv     one line per epoch
    config.json     the configuration of the run
and TensorBoard summaries into `filewriter_path`.
"""
import argparse
import csv
import json
import math
import os
import re
import shlex
import shutil
import signal
import sys
import threading
import time

import numpy as np

from alexnet import AlexNet, LAYERS, PIXEL_STD, tf, variable
from datagenerator import (CACHE_MODES, IMAGENET_MEAN_BGR, ImageDataGenerator,
                           ImageError, ListFileError, check_dtype,
                           missing_images, read_list)
from featurecache import open_feature_caches
import weights as weights_io

HISTORY_COLUMNS = ['epoch', 'train_loss', 'train_acc', 'val_loss', 'val_acc',
                   'seconds', 'images_per_sec']

# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


class Config(dict):
    """The configuration as a dict whose keys also read as attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)


def configure(script_globals, argv=None):
    """Apply command-line overrides to a script's configuration block.

    The configuration is every lowercase global of the script holding a
    number, string, bool or list. Each becomes a flag (`--num_epochs 5` or
    `--num_epochs=5`) whose help text is the comment on its line. The script's
    globals are updated too, so the script can keep using plain names.
    Returns a Config with the extra switches `scratch`, `resume`, `strict`
    and `demo`.
    """
    # One line at a time even into a log file (`python finetune.py > log`),
    # where Python would otherwise hold the epoch lines back in a buffer.
    if hasattr(sys.stdout, 'reconfigure'):  # Python 3.7+
        sys.stdout.reconfigure(line_buffering=True)
    script = script_globals.get('__file__', 'finetune.py')
    comments = _config_comments(script)
    defaults = {name: value for name, value in script_globals.items()
                if not name.startswith('_') and name.islower()
                and isinstance(value, (bool, int, float, str, list))}
    parser = argparse.ArgumentParser(
        prog=os.path.basename(script), allow_abbrev=False,
        description=(script_globals.get('__doc__') or '').strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in defaults.items():
        shown = ','.join(default) if isinstance(default, list) else default
        parser.add_argument('--' + name, type=_parser_for(default),
                            default=default, metavar=type(default).__name__.upper(),
                            help='%s (default: %s)' % (comments.get(name, ''), shown))
    parser.add_argument('--scratch', action='store_true', help=(
        'train every layer from scratch: the same as commenting out '
        'model.load_initial_weights(sess)'))
    parser.add_argument('--resume', action='store_true', help=(
        'continue the run in checkpoint_path from its newest checkpoint'))
    parser.add_argument('--strict', action='store_true', help=(
        'stop at the first unreadable image instead of skipping it'))
    parser.add_argument('--demo', action='store_true', help=(
        'train a few epochs from scratch on a small generated image set; '
        'needs no download'))
    config = Config(vars(parser.parse_args(argv)))
    script_globals.update({name: config[name] for name in defaults})
    return config


def _config_comments(script):
    """{name: comment} for the `name = value  # comment` lines of a script."""
    comments = {}
    try:
        with open(script, encoding='utf-8') as f:
            for line in f:
                match = re.match(r'^([a-z_][a-z0-9_]*)\s*=.*?#\s*(.*)$', line)
                if match:
                    comments[match.group(1)] = match.group(2)
    except OSError:
        pass
    return comments


def _parser_for(default):
    """The function that turns a command-line string into the default's type."""
    if isinstance(default, bool):
        return _parse_bool
    if isinstance(default, list):
        return lambda text: [item for item in text.split(',') if item]
    return type(default)


def _parse_bool(text):
    value = text.lower()
    if value in ('1', 'true', 'yes', 'on'):
        return True
    if value in ('0', 'false', 'no', 'off'):
        return False
    raise argparse.ArgumentTypeError('expected true or false, not %r' % text)


def check_config(config):
    """Stop with one clear message if the configuration cannot work."""
    problems = []
    for name in ('num_epochs', 'batch_size', 'num_classes', 'display_step',
                 'keep_checkpoints'):
        if config.get(name, 1) < 1:
            problems.append('%s must be at least 1, not %s' % (name, config[name]))
    if config.get('workers', 0) < 0:
        problems.append('workers must be 0 (one per core) or more')
    if config.get('image_cache', 'auto') not in CACHE_MODES:
        problems.append('image_cache must be one of %s, not %r'
                        % (', '.join(CACHE_MODES), config.image_cache))
    if not config.train_layers:
        problems.append('train_layers is empty: no layer would learn')
    if not 0 <= config.dropout_rate < 1:
        problems.append('dropout_rate must be in [0, 1), not %s' % config.dropout_rate)
    if config.learning_rate <= 0:
        problems.append('learning_rate must be positive')
    for name in ('train_layers', 'skip_layer'):
        unknown = [layer for layer in config[name] if layer not in LAYERS]
        if unknown:
            problems.append('%s names unknown layers %s; the layers are %s'
                            % (name, unknown, ', '.join(LAYERS)))
    if problems:
        sys.exit('Configuration error:\n  ' + '\n  '.join(problems))
    frozen_fresh = [layer for layer in config.skip_layer
                    if layer not in config.train_layers]
    if frozen_fresh and not config.get('scratch'):
        print('Note: %s in skip_layer but not in train_layers: random '
              'weights that never learn.' % ', '.join(frozen_fresh))


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


def prepare(config):
    """Everything between parsing the flags and building the graph:
    the demo data set, the checks of the configuration and of the inputs."""
    if config.demo:
        use_demo_data(config)
    check_config(config)
    if config.scratch:  # what commenting out load_initial_weights does
        config['skip_layer'] = list(LAYERS)
    check_inputs(config,
                 needs_weights=not set(LAYERS) <= set(config.skip_layer))


def use_demo_data(config):
    """Point the configuration at a small generated data set (--demo).

    Everything goes to runs/demo: the images (made once), and a run that
    each --demo starts afresh (or continues, with --resume).
    """
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), 'tools'))
    from demo_data import CLASS_NAMES, make_demo_dataset
    folder = os.path.join('runs', 'demo')
    train_file = os.path.join(folder, 'data', 'train.txt')
    val_file = os.path.join(folder, 'data', 'val.txt')
    if not (os.path.exists(train_file) and os.path.exists(val_file)):
        make_demo_dataset(os.path.join(folder, 'data'))
    run_folder = os.path.join(folder, 'scratch')
    if not config.resume and os.path.isdir(run_folder):
        shutil.rmtree(run_folder)  # the previous demo run: ours to replace
    config.update(train_file=train_file, val_file=val_file, replacementpath='',
                  num_classes=len(CLASS_NAMES), num_epochs=4, batch_size=16,
                  learning_rate=0.0003, display_step=4, scratch=True,
                  keep_checkpoints=1,
                  filewriter_path=os.path.join(folder, '{mode}', 'tensorboard'),
                  checkpoint_path=os.path.join(folder, '{mode}', 'checkpoints'))
    print('Demo: %d generated classes (%s) in %s, trained from scratch.'
          % (len(CLASS_NAMES), ', '.join(CLASS_NAMES), folder))


def check_inputs(config, needs_weights):
    """Before building anything: are the lists, images and weights there?

    Lists every missing input in one message, each with the command that
    gets it, and stops.
    """
    missing = []
    for name in ('train_file', 'val_file'):
        list_file = config[name]
        if not os.path.isfile(list_file):
            missing.append('the list %s (%s): it ships with the project; to '
                           'remake it: python tools/make_lists.py'
                           % (list_file, name))
            continue
        try:
            paths, _, lines = read_list(list_file, config.replacementpath,
                                        config.num_classes)
        except ListFileError as error:
            sys.exit(str(error))
        absent = missing_images(paths, lines)
        if absent:
            missing.append('%d of the %d images of %s, e.g. %s (line %d): %s'
                           % (len(absent), len(paths), list_file, absent[0][0],
                              absent[0][1], _get_images_command(config)))
    weights = config.weights_path
    if needs_weights and not os.path.isfile(weights):
        missing.append('the ImageNet weights %s (weights_path): python '
                       'tools/download.py --only weights --weights-dest %s '
                       '(see bvlc_alexnet.npy.md), or pass --scratch to train '
                       'without them' % (weights, os.path.dirname(weights) or '.'))
    if missing:
        sys.exit('Cannot start, missing:\n  - ' + '\n  - '.join(missing))
    if needs_weights and not config.resume:
        check_weights_file(config)


def check_weights_file(config):
    """Read the weights file once before building anything, so that a
    broken, hostile or mismatched file stops the run with its message
    rather than a traceback from inside load_initial_weights."""
    expected = dict(weights_io.ALEXNET_SHAPES)
    expected['fc8'] = {'weights': (4096, config.num_classes),
                       'biases': (config.num_classes,)}
    try:
        layers = weights_io.read_weights(config.weights_path)
        weights_io.check_layers(layers, expected, config.skip_layer,
                                config.weights_path)
    except weights_io.WeightsFileError as error:
        sys.exit(str(error))


def _get_images_command(config):
    """The download command that puts the images where the lists look."""
    folder = config.replacementpath
    if folder and os.path.basename(os.path.normpath(folder)) == 'jpg':
        return ('python tools/download.py --only data --dest %s'
                % (os.path.dirname(os.path.normpath(folder)) or '.'))
    return ('python tools/download.py --only data, then set replacementpath '
            'to the jpg folder it makes')


def open_data(config, loader):
    """The training generator (shuffled; random crops and mirrors unless
    `augment` is off) and the validation generator (list order, centre
    crops). Both keep the decoded images between epochs (`image_cache`)
    and give uint8 batches, whose mean the graph subtracts."""
    common = dict(nb_classes=config.num_classes, loader=loader, mean=None,
                  replacementpath=config.replacementpath, seed=config.seed,
                  strict=config.get('strict', False),
                  workers=config.get('workers') or None,
                  cache=config.get('image_cache', 'auto'))
    augment = config.get('augment', True)
    train_data = ImageDataGenerator(config.train_file, shuffle=True,
                                    horizontal_flip=augment,
                                    random_crop=augment, **common)
    val_data = ImageDataGenerator(config.val_file, **common)
    return train_data, val_data


# ---------------------------------------------------------------------------
# The graph
# ---------------------------------------------------------------------------


class Graph(object):
    """The tensors and operations of a training run, built by build_graph.

    The main ones:
        pixels: the input to feed, uint8 [batch, 227, 227, 3] BGR crops, as
            the generators of open_data make them (mean=None).
        x: float32, the pixels minus the ImageNet mean: the network's input.
        y: one-hot labels; keep_prob, learning_rate, dropout_seed: the
            other feeds of a training step.
        model: the AlexNet; loss, losses, correct, accuracy; train_op.
    """


def build_graph(config):
    """AlexNet with a softmax loss and an SGD-with-momentum step, as Caffe.

    Caffe's fine-tuning recipe, reproduced exactly (see sgd_updates):
    - weight decay adds weight_decay * w to the gradient of each weight
      (biases are not decayed), as the loss + weight_decay * sum(||w||^2) / 2
      would;
    - biases learn at 2x the rate of weights (Caffe's lr_mult: 2);
    - layers that start from a fresh initialisation learn at
      `new_layer_lr_mult` (10x) the base rate when fine-tuning (fc8).
    The multipliers are variables set once the weights are loaded (see
    set_rate_multipliers), so commenting out the load line is enough to
    switch to the rates of a scratch run.
    """
    tf.reset_default_graph()
    tf.set_random_seed(config.seed)
    make_deterministic()
    g = Graph()
    # Batches arrive as uint8 pixels and the mean is subtracted here, not in
    # NumPy: a quarter of the bytes to queue and to copy to a GPU each step.
    g.pixels = tf.placeholder(tf.uint8, [None, 227, 227, 3], name='pixels')
    g.x = tf.subtract(tf.cast(g.pixels, tf.float32), IMAGENET_MEAN_BGR,
                      name='minus_mean')
    g.y = tf.placeholder(tf.float32, [None, config.num_classes], name='labels')
    g.keep_prob = tf.placeholder_with_default(1.0, [], name='keep_prob')
    g.learning_rate = tf.placeholder(tf.float32, [], name='learning_rate')
    # [seed, step]: the dropout masks of a step depend on these two numbers
    # only, so an interrupted and resumed run repeats them exactly.
    g.dropout_seed = tf.placeholder_with_default(
        tf.constant([config.seed, 0], tf.int64), [2], name='dropout_seed')
    skip_layer = LAYERS if config.scratch else config.skip_layer
    g.model = AlexNet(g.x, g.keep_prob, config.num_classes, skip_layer,
                      config.weights_path, dropout_seed=g.dropout_seed)

    with tf.name_scope('loss'):
        g.losses = tf.nn.softmax_cross_entropy_with_logits_v2(
            labels=g.y, logits=g.model.fc8)
        g.loss = tf.reduce_mean(g.losses)
    with tf.name_scope('accuracy'):
        g.correct = tf.equal(tf.argmax(g.model.fc8, 1), tf.argmax(g.y, 1))
        g.accuracy = tf.reduce_mean(tf.cast(g.correct, tf.float32))

    with tf.name_scope('train'):
        g.lr_mult = {layer: tf.Variable(1.0, trainable=False,
                                        name=layer + '_lr_mult')
                     for layer in LAYERS}
        g.train_op = tf.group(*sgd_updates(g, config), name='sgd')
    g.epoch = tf.Variable(0, trainable=False, name='epoch')  # epochs done
    # Where a run stopped by Ctrl-C stands within its epoch: the steps done
    # and the sums of loss, correct answers and images seen so far.
    g.step_in_epoch = tf.Variable(0, trainable=False, name='step_in_epoch')
    g.epoch_sums = tf.Variable(np.zeros(3), trainable=False,
                               name='epoch_sums')
    g.best_acc = tf.Variable(-1.0, trainable=False, name='best_val_acc')
    g.init = tf.global_variables_initializer()
    return g


def make_deterministic():
    """Same seed, same numbers: ask TensorFlow for deterministic kernels.

    Without it, the order in which threads add up a gradient varies from run
    to run; the rounding differences grow over the steps, and two runs of
    the same seed drift apart after a few steps. On a CPU this costs nothing
    we could measure. TF 2.8+ has a switch; TF 1.14+ reads an environment
    variable, which only covers GPU kernels (TF 1.x CPU runs stay close but
    not bit-identical).
    """
    os.environ.setdefault('TF_DETERMINISTIC_OPS', '1')
    import tensorflow
    config = getattr(tensorflow, 'config', None)
    enable = getattr(getattr(config, 'experimental', None),
                     'enable_op_determinism', None)
    if enable is not None:
        enable()


def sgd_updates(g, config):
    """One update op per trained layer: Caffe's SGD step, in the order
    backpropagation allows.

    For each variable, Caffe's rule: the gradient of the loss, plus
    weight_decay * w for weights (not biases), times the rate multiplier,
    into the momentum. Two orderings keep the step exact and the memory low:

    - The decay is added once the layer's gradient exists. (As a term of the
      loss, its products weight_decay * w, 244 MB for all layers, were all
      computed at the start of the backward pass and held to its end.)
    - A layer's weights change once the gradient sent down to the layer
      below has been computed: that gradient reads them, and TF1 variables
      are read when an op runs, so an earlier update would leak into it (a
      race that made two runs of the same seed differ). Waiting for exactly
      that, rather than for every gradient, frees each layer's gradient
      as soon as it is applied.
    """
    layers = [layer for layer in LAYERS if layer in config.train_layers]
    weights = [variable(layer, 'weights') for layer in layers]
    biases = [variable(layer, 'biases') for layer in layers]
    # Nothing below the lowest trained layer learns, so no gradient is sent
    # down from it; every layer above it sends one.
    senders = layers[1:]
    inputs = [g.model.layer_inputs[layer] for layer in senders]
    # One backward pass gives all three: the gradients of the weights, of
    # the biases, and of the inputs of the senders (the gradient sent down).
    gradients = tf.gradients(g.loss, weights + biases + inputs)
    n = len(layers)
    weight_grads, bias_grads = gradients[:n], gradients[n:2 * n]
    sent_down = dict(zip(senders, gradients[2 * n:]))
    optimizer = tf.train.MomentumOptimizer(g.learning_rate, config.momentum)
    updates = []
    for layer, w, b, w_grad, b_grad in zip(layers, weights, biases,
                                           weight_grads, bias_grads):
        # Wait for the gradient before computing the decay, for memory only.
        with tf.control_dependencies([w_grad]):
            decayed = w_grad + config.weight_decay * w
        rate = g.lr_mult[layer]  # Caffe's lr_mult; biases learn at twice it
        step = [(decayed * rate, w), (b_grad * (2.0 * rate), b)]
        wait_for = [sent_down[layer]] if layer in sent_down else []
        with tf.control_dependencies(wait_for):
            updates.append(optimizer.apply_gradients(step))
    return updates


def session_config():
    """Settings for the training session.

    - No constant folding: TensorFlow would otherwise fold the zeros that
      initialise the momentum of each weight into constants that the session
      keeps, 230 MB (of GPU memory on a GPU) for nothing. Two optimisers
      fold constants: Grappler (rewrite_options) and the classic one, whose
      level L0 also turns off its common-subexpression elimination. Neither
      makes a step of this graph faster (checked on a CPU).
    - allow_growth: take GPU memory as needed rather than all of it at the
      start, so that a shared course GPU serves several students.
    """
    config = tf.ConfigProto()
    rewrite = config.graph_options.rewrite_options
    rewrite.constant_folding = rewrite.OFF
    config.graph_options.optimizer_options.opt_level = tf.OptimizerOptions.L0
    config.gpu_options.allow_growth = True
    return config


def set_rate_multipliers(sess, graph, config):
    """Per-layer learning-rate multipliers, once the weights are loaded.

    Fine-tuning: the fresh layers (those load_initial_weights left alone,
    fc8) learn `new_layer_lr_mult` (10x) faster, to catch up with the
    pretrained ones. From scratch every layer learns at the base rate.

    A fresh conv1 learns PIXEL_STD**2 (3600x) slower: its input is in pixel
    units (std about 60) rather than unit-sized, which makes its gradients 60
    times larger and its initial weights 60 times smaller than those of the
    other layers. Dividing its rate by 60**2 makes it learn exactly as if the
    input were scaled to unit size; without it a scratch run diverges.
    """
    fine_tuning = bool(graph.model.loaded_layers)
    for layer in LAYERS:
        multiplier = 1.0
        if layer not in graph.model.loaded_layers:
            if fine_tuning:
                multiplier = config.new_layer_lr_mult
            if layer == 'conv1':
                multiplier /= PIXEL_STD ** 2
        graph.lr_mult[layer].load(multiplier, sess)


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def run_name(graph):
    """'finetune' if ImageNet weights were loaded, 'scratch' otherwise."""
    return 'finetune' if graph.model.loaded_layers else 'scratch'


def train(sess, graph, train_data, val_data, config):
    """Train for config.num_epochs epochs; returns the history rows.

    Each epoch: one pass over the training list, then the validation
    accuracy over every validation image, a line of history.csv, TensorBoard
    summaries, and a checkpoint.
    """
    name = run_name(graph)
    checkpoint_path = config.checkpoint_path.format(mode=name)
    filewriter_path = config.filewriter_path.format(mode=name)
    saver = tf.train.Saver(max_to_keep=config.keep_checkpoints)
    best_saver = tf.train.Saver(max_to_keep=1)
    history_file = os.path.join(checkpoint_path, 'history.csv')
    history = start_or_resume(sess, saver, graph, config, name,
                              checkpoint_path, history_file)
    first_epoch = sess.run(graph.epoch) + 1

    print('Training %s: %d training and %d validation images, %d classes. '
          'Random guessing scores %.2f%%.'
          % ('from ImageNet weights (fine-tuning)' if name == 'finetune'
             else 'from scratch', train_data.data_size, val_data.data_size,
             config.num_classes, 100.0 / config.num_classes))
    print('Checkpoints and history in %s; TensorBoard: tensorboard --logdir %s'
          % (checkpoint_path, filewriter_path))

    writer = tf.summary.FileWriter(filewriter_path, sess.graph)
    if config.resume:  # hide the curves of epochs after the checkpoint
        writer.add_session_log(tf.SessionLog(status=tf.SessionLog.START),
                               first_epoch - 1)
    epoch = first_epoch
    stop_on_signals()
    try:
        # After the weights are loaded or restored: the feature cache keeps
        # the output of the frozen layers, which must hold their final values.
        features = open_feature_caches(sess, graph, train_data, val_data,
                                       config)
        if features[0] is None:  # with cached features no image is decoded
            print(train_data.cache_description())
            print(val_data.cache_description())
        for epoch in range(first_epoch, config.num_epochs + 1):
            row, is_best = run_epoch(sess, graph, train_data, val_data,
                                     config, epoch, writer, features)
            history.append(row)
            # history.csv first: a crash between the two leaves the previous
            # checkpoint, and --resume drops the history rows after it.
            write_history(history, history_file)
            save_checkpoint(sess, saver, best_saver, checkpoint_path, epoch,
                            is_best)
            if STOP.is_set():
                sys.exit('\nStopped after epoch %d; its checkpoint is in %s. '
                         'To continue:\n  %s' % (epoch, checkpoint_path,
                                                 resume_command()))
    except StopRequested as stop:
        save_interrupted(sess, saver, graph, checkpoint_path, epoch, stop)
    except (FloatingPointError, ImageError, SaveError) as error:
        sys.exit(str(error))
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once
        if epoch == 1:
            sys.exit('\nInterrupted in epoch 1, before any checkpoint: run '
                     'the same command again to start over.')
        sys.exit('\nInterrupted in epoch %d, which is abandoned; the '
                 'checkpoint of epoch %d in %s is kept. To continue:\n  %s'
                 % (epoch, epoch - 1, checkpoint_path, resume_command()))
    finally:
        writer.close()
    if history:
        best = max(history, key=lambda r: r['val_acc'])
        print('Best validation accuracy %.2f%% in epoch %d (chance: %.2f%%).'
              % (100 * best['val_acc'], best['epoch'],
                 100.0 / config.num_classes))
    return history


#: Settings a resumed run must share with the run it continues: they shape
#: the graph or fix the order, crops and dropout masks of the epochs to come.
#: (learning_rate, num_epochs and the display and output settings may change.)
RESUME_MUST_MATCH = ('num_classes', 'train_layers', 'skip_layer', 'batch_size',
                     'seed', 'augment', 'dropout_rate', 'new_layer_lr_mult',
                     'momentum', 'weight_decay', 'train_file')


def start_or_resume(sess, saver, graph, config, name, checkpoint_path,
                    history_file):
    """A new run (refusing to overwrite one) or, with --resume, the restored
    one. Returns the history so far."""
    config_file = os.path.join(checkpoint_path, 'config.json')
    latest = tf.train.latest_checkpoint(checkpoint_path)
    if not config.resume:
        if latest:
            sys.exit('%s already holds a run (%s). Pass --resume to continue '
                     'it, or --checkpoint_path for a new folder, or delete it.'
                     % (checkpoint_path, latest))
        set_rate_multipliers(sess, graph, config)
        os.makedirs(checkpoint_path, exist_ok=True)
        write_config(config, name, config_file)
        return []
    if latest is None:
        sys.exit('--resume: no checkpoint in %s. Run without --resume to '
                 'start a new run there.' % checkpoint_path)
    check_same_settings(config, config_file)
    try:
        saver.restore(sess, latest)
    except tf.errors.OpError as error:
        sys.exit('--resume: cannot restore %s into this graph: %s'
                 % (latest, error.message))
    epoch = sess.run(graph.epoch)
    print('Resuming from %s: %d epochs done.' % (latest, epoch))
    return [row for row in read_history(history_file) if row['epoch'] <= epoch]


def check_same_settings(config, config_file):
    """Stop if --resume changes a setting the saved run depends on."""
    if not os.path.exists(config_file):
        return
    with open(config_file) as f:
        saved = json.load(f)
    changed = ['%s: %r in the run, %r now' % (key, saved[key], config.get(key))
               for key in RESUME_MUST_MATCH
               if key in saved and saved[key] != config.get(key)]
    if changed:
        sys.exit('--resume would change settings of the saved run:\n  %s\n'
                 'Resume with the settings of %s, or start a new run in '
                 'another --checkpoint_path.'
                 % ('\n  '.join(changed), config_file))


def run_epoch(sess, graph, train_data, val_data, config, epoch, writer,
              features=(None, None)):
    """Train one epoch and validate; returns (history row, is it the best).
    `features`: the (training, validation) FeatureCaches, or None each."""
    start = time.time()
    train_data.reset_pointer(epoch=epoch - 1)
    train_loss, train_acc = train_epoch(sess, graph, train_data, config, epoch,
                                        features[0])
    graph.step_in_epoch.load(0, sess)  # the epoch is whole again
    graph.epoch_sums.load(np.zeros(3), sess)
    seconds = time.time() - start
    val_loss, val_acc = validate(sess, graph, val_data, config.batch_size,
                                 features[1])
    row = dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc,
               val_loss=val_loss, val_acc=val_acc, seconds=seconds,
               images_per_sec=train_data.data_size / seconds)
    is_best = val_acc > sess.run(graph.best_acc)
    if is_best:
        graph.best_acc.load(val_acc, sess)
    graph.epoch.load(epoch, sess)
    write_summaries(writer, row, config.learning_rate)
    skipped = len(train_data.skipped) + len(val_data.skipped)
    print('Epoch %d/%d: train loss %.4f acc %.2f%% | val loss %.4f acc %.2f%%%s'
          ' | %.1f img/s, %.0f s%s'
          % (epoch, config.num_epochs, train_loss, 100 * train_acc, val_loss,
             100 * val_acc, ' (best)' if is_best else '',
             row['images_per_sec'], seconds,
             ' | %d unreadable images skipped' % skipped if skipped else ''))
    return row, is_best


def train_epoch(sess, graph, data, config, epoch, features=None):
    """One pass over the training images; returns (mean loss, accuracy).

    With a FeatureCache the batches hold the cached features of the images,
    fed into the frozen layer's tensor instead of images into graph.pixels.
    """
    steps = data.steps_per_epoch(config.batch_size)
    first_step = (epoch - 1) * steps  # steps of the run before this epoch
    # Zero, unless this epoch was stopped by Ctrl-C and is now resumed.
    done, (loss_sum, correct_sum, seen) = sess.run([graph.step_in_epoch,
                                                    graph.epoch_sums])
    data.pointer = done * config.batch_size
    progress = Progress(steps, 'Epoch %d/%d' % (epoch, config.num_epochs),
                        config.display_step, done)
    if features is None:
        inputs = graph.pixels
        batches = data.batches(config.batch_size, prefetch=2)
    else:
        inputs, batches = features.tensor, features.batches(data,
                                                            config.batch_size)
    wait_start = time.time()
    for step, (images, labels) in enumerate(batches, start=done + 1):
        data_time = time.time() - wait_start
        if len(labels) == 0:  # every image of the batch was unreadable
            continue
        check_dtype(images, inputs, data.class_list)
        _, loss, correct = sess.run(
            [graph.train_op, graph.loss, graph.correct],
            feed_dict={inputs: images, graph.y: labels,
                       graph.keep_prob: 1.0 - config.dropout_rate,
                       graph.learning_rate: config.learning_rate,
                       graph.dropout_seed: [config.seed, first_step + step]})
        if not math.isfinite(loss):
            raise FloatingPointError(
                'The loss became %s at epoch %d, step %d: the learning rate '
                '%g is too high for this run. Lower it (e.g. --learning_rate '
                '%g) and resume from the last good checkpoint with --resume.'
                % (loss, epoch, step, config.learning_rate,
                   config.learning_rate / 10))
        loss_sum += loss * len(labels)
        correct_sum += correct.sum()
        seen += len(labels)
        progress.update(len(labels), loss_sum / seen, correct_sum / seen,
                        data_time, time.time() - wait_start - data_time)
        if STOP.is_set() and step < steps:
            progress.close()
            raise StopRequested(step, (loss_sum, correct_sum, seen))
        wait_start = time.time()
    progress.close()
    if not seen:
        raise ImageError('no image of %s could be read' % data.class_list)
    return loss_sum / seen, correct_sum / seen


def validate(sess, graph, data, batch_size, features=None):
    """Mean loss and accuracy over every readable image of `data` (no
    dropout, centre crops), from its cached features if `features` is set."""
    data.reset_pointer(epoch=0)
    loss_sum = correct_sum = seen = 0.0
    if features is None:
        inputs, batches = graph.pixels, data.batches(batch_size, prefetch=2)
    else:
        inputs, batches = features.tensor, features.batches(data, batch_size)
    for images, labels in batches:
        if len(labels) == 0:
            continue
        check_dtype(images, inputs, data.class_list)
        losses, correct = sess.run([graph.losses, graph.correct],
                                   feed_dict={inputs: images,
                                              graph.y: labels})
        loss_sum += losses.sum()
        correct_sum += correct.sum()
        seen += len(labels)
    if not seen:
        raise ImageError('no image of %s could be read' % data.class_list)
    return loss_sum / seen, correct_sum / seen


class SaveError(IOError):
    """A checkpoint or history.csv could not be written."""


def save_checkpoint(sess, saver, best_saver, checkpoint_path, epoch, is_best):
    """Save epoch-N (the last keep_checkpoints are kept) and, if it is the
    best so far, best.

    TensorFlow writes the files of a checkpoint first and only then rewrites
    the `checkpoint` file that names the newest one, so a crash while saving
    leaves the previous checkpoint in charge. A failed save (disk full, no
    permission) stops the run with the reason; the previous one is kept.
    """
    try:
        # best first: the epoch checkpoint records the best accuracy so far,
        # so once it exists the best checkpoint must exist too.
        if is_best:
            best_saver.save(sess, os.path.join(checkpoint_path, 'best'),
                            latest_filename='best_checkpoint')
        saver.save(sess, os.path.join(checkpoint_path, 'epoch'),
                   global_step=epoch)
    except (tf.errors.OpError, OSError, ValueError) as error:
        raise SaveError(
            'Could not save the checkpoint of epoch %d in %s: %s\nThe '
            'previous checkpoint is kept. Free some space or fix the '
            'folder\'s permissions, then continue with:\n  %s'
            % (epoch, checkpoint_path, getattr(error, 'message', error),
               resume_command()))


def resume_command():
    """The command line of this run, with --resume."""
    words = [os.path.basename(sys.executable)] + sys.argv
    if '--resume' not in words:
        words.append('--resume')
    return ' '.join(shlex.quote(word) for word in words)


#: Set by the first Ctrl-C (SIGINT) or SIGTERM: finish the step, save, stop.
STOP = threading.Event()


class StopRequested(Exception):
    """Raised after the step during which Ctrl-C was pressed."""

    def __init__(self, step, sums):
        Exception.__init__(self, step)
        self.step, self.sums = step, sums


def stop_on_signals():
    """Ctrl-C (SIGINT) or SIGTERM (sent by `kill` or a batch system) lets
    the current step finish, saves a checkpoint in the middle of the epoch
    and stops; a second Ctrl-C stops at once, abandoning the epoch."""
    def request_stop(signum, frame):
        if STOP.is_set():
            raise KeyboardInterrupt
        STOP.set()
        print('\nStopping after this step (Ctrl-C again: stop at once).')
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)


def save_interrupted(sess, saver, graph, checkpoint_path, epoch, stop):
    """Save where a stopped epoch stands, as interrupted-N, and exit."""
    graph.step_in_epoch.load(stop.step, sess)
    graph.epoch_sums.load(np.array(stop.sums, np.float64), sess)
    try:
        saver.save(sess, os.path.join(checkpoint_path, 'interrupted'),
                   global_step=epoch)
    except (tf.errors.OpError, OSError) as error:
        sys.exit('Stopped in epoch %d, but the checkpoint could not be '
                 'saved (%s); the one of epoch %d is kept. To continue:\n  %s'
                 % (epoch, error, epoch - 1, resume_command()))
    sys.exit('\nStopped in epoch %d after step %d; saved %s. To continue:'
             '\n  %s' % (epoch, stop.step, os.path.join(
                 checkpoint_path, 'interrupted-%d' % epoch), resume_command()))


def read_history(history_file):
    """The rows of a history.csv, numbers as numbers."""
    if not os.path.exists(history_file):
        return []
    with open(history_file, newline='') as f:
        return [{key: (int(value) if key == 'epoch' else float(value))
                 for key, value in row.items()} for row in csv.DictReader(f)]


def write_history(history, history_file):
    """Rewrite history.csv whole, through a temporary file and a rename, so
    a crash never leaves it half written."""
    temporary = history_file + '.tmp'
    try:
        with open(temporary, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS)
            writer.writeheader()
            for row in history:
                writer.writerow({key: (row[key] if key == 'epoch' else
                                       repr(float(row[key])))
                                 for key in HISTORY_COLUMNS})
        os.replace(temporary, history_file)
    except OSError as error:
        raise SaveError('Could not write %s: %s. Continue with:\n  %s'
                              % (history_file, error, resume_command()))


def write_config(config, name, path):
    record = dict(config, mode=name, tensorflow=tf.__version__)
    with open(path, 'w') as f:
        json.dump(record, f, indent=2, sort_keys=True)


def write_summaries(writer, row, learning_rate):
    """Per-epoch curves for TensorBoard."""
    values = [('train/loss', row['train_loss']),
              ('train/accuracy', row['train_acc']),
              ('validation/loss', row['val_loss']),
              ('validation/accuracy', row['val_acc']),
              ('learning_rate', learning_rate)]
    summary = tf.Summary(value=[tf.Summary.Value(tag=tag, simple_value=value)
                                for tag, value in values])
    writer.add_summary(summary, row['epoch'])
    writer.flush()


class Progress(object):
    """Progress within an epoch: a live bar on a terminal (tqdm, when it is
    installed), plain lines every `display_step` batches otherwise (logs,
    notebooks, CI), with images/s, time left, and the split between waiting
    for data and computing."""

    def __init__(self, steps, title, display_step, done=0):
        self.steps, self.title, self.display_step = steps, title, display_step
        self.done = done  # steps made before a resume
        self.step, self.images = done, 0
        self.data_time = self.compute_time = 0.0
        self.start = time.time()
        self.bar = None
        if sys.stdout.isatty():
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=steps, initial=done, desc=title,
                                unit='batch', leave=False)
            except ImportError:
                pass

    def update(self, images, loss, accuracy, data_time, compute_time):
        self.step += 1
        self.images += images
        self.data_time += data_time
        self.compute_time += compute_time
        rate = self.images / max(time.time() - self.start, 1e-9)
        left = ((self.steps - self.step) * (time.time() - self.start)
                / (self.step - self.done))
        if self.bar is not None:
            self.bar.set_postfix_str('loss %.3f acc %.1f%% %.1f img/s' % (
                loss, 100 * accuracy, rate))
            self.bar.update(1)
        elif self.step % self.display_step == 0 or self.step == self.steps:
            print('%s [%d/%d] loss %.4f acc %.2f%% | %.1f img/s | data %.2fs '
                  'compute %.2fs | %.0fs left' % (
                      self.title, self.step, self.steps, loss, 100 * accuracy,
                      rate, self.data_time, self.compute_time, left))
            sys.stdout.flush()

    def close(self):
        if self.bar is not None:
            self.bar.close()
