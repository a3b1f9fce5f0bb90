"""The training scripts: configuration, pre-flight checks, whole runs."""
import csv
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import training
from conftest import ROOT
from demo_data import make_demo_dataset

FINETUNE = os.path.join(ROOT, 'finetune.py')


def script_globals(**overrides):
    """A config block as finetune.py defines it."""
    values = dict(__file__=FINETUNE, __doc__='Fine-tune.', train_file='t.txt',
                  num_epochs=30, learning_rate=0.001, train_layers=['fc7', 'fc8'],
                  seed=1, replacementpath='data', LOADER='opencv')
    values.update(overrides)
    return values


def test_flags_override_the_config_block_in_both_spellings():
    values = script_globals()
    config = training.configure(values, ['--num_epochs', '5',
                                         '--learning_rate=0.01',
                                         '--train_layers', 'fc6,fc7,fc8',
                                         '--replacementpath=', '--scratch'])
    assert config.num_epochs == 5 and values['num_epochs'] == 5
    assert config.learning_rate == 0.01
    assert config.train_layers == ['fc6', 'fc7', 'fc8']
    assert config.replacementpath == ''
    assert config.scratch and not config.resume and not config.demo
    assert config.seed == 1 and 'LOADER' not in config


@pytest.mark.parametrize('argv, named', [(['--num_epoch', '5'], '--num_epoch'),
                                         (['--num_epochs', 'five'], '--num_epochs'),
                                         (['--learning_rate', 'x'], '--learning_rate')])
def test_unknown_flags_and_bad_values_are_errors_naming_them(argv, named, capsys):
    with pytest.raises(SystemExit) as stop:
        training.configure(script_globals(), argv)
    assert stop.value.code == 2
    assert named in capsys.readouterr().err


def test_help_lists_every_setting_with_comment_and_default(capsys):
    with pytest.raises(SystemExit):
        training.configure(script_globals(__file__=FINETUNE), ['--help'])
    text = ' '.join(capsys.readouterr().out.split())
    assert '--num_epochs INT passes over the training list (default: 30)' in text
    assert '--train_layers LIST layers that learn (default: fc7,fc8)' in text
    assert '--scratch' in text and '--resume' in text and '--demo' in text


def test_configuration_errors_are_named():
    config = training.configure(script_globals(), ['--num_epochs', '0'])
    config.update(batch_size=8, num_classes=4, dropout_rate=0.5,
                  skip_layer=['fc9'])
    with pytest.raises(SystemExit) as stop:
        training.check_config(config)
    assert 'num_epochs must be at least 1' in str(stop.value.code)
    assert "skip_layer names unknown layers ['fc9']" in str(stop.value.code)


def test_missing_inputs_are_listed_together_with_the_commands(tmp_path):
    val = tmp_path / 'val.txt'
    val.write_text('jpg/image_00001.jpg 0\n')
    config = training.Config(train_file=str(tmp_path / 'absent.txt'),
                             val_file=str(val), num_classes=102,
                             replacementpath=str(tmp_path / 'flowers' / 'jpg'),
                             weights_path=str(tmp_path / 'bvlc_alexnet.npy'))
    with pytest.raises(SystemExit) as stop:
        training.check_inputs(config, needs_weights=True)
    message = stop.value.code
    assert 'absent.txt' in message and 'tools/make_lists.py' in message
    assert '1 of the 1 images of %s' % val in message
    assert '--only data --dest %s' % (tmp_path / 'flowers') in message
    assert 'bvlc_alexnet.npy' in message and '--only weights' in message
    with pytest.raises(SystemExit) as stop:
        training.check_inputs(config, needs_weights=False)
    assert '--only weights' not in stop.value.code


# ---- whole runs, as a user starts them --------------------------------------

def run_script(script, *args, check=True):
    """Run finetune.py or finetune_pil.py; returns (exit code, output)."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, script)] + list(args),
                            cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True,
                            timeout=600)
    if check:
        assert result.returncode == 0, result.stdout[-3000:]
    return result.returncode, result.stdout


@pytest.fixture(scope='module')
def demo_lists(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp('demo'))
    return make_demo_dataset(folder, train_per_class=6, val_per_class=3)


def read_history(path):
    with open(os.path.join(path, 'history.csv')) as f:
        return list(csv.DictReader(f))


def small_run_flags(demo_lists, tmp_path):
    train_file, val_file = demo_lists
    return ['--train_file', train_file, '--val_file', val_file,
            '--replacementpath', '', '--num_classes', '4', '--batch_size', '8',
            '--checkpoint_path', str(tmp_path / 'ck'),
            '--filewriter_path', str(tmp_path / 'tb')]


@pytest.mark.parametrize('script', ['finetune.py', 'finetune_pil.py'])
def test_scripts_train_a_tiny_epoch_from_scratch(script, demo_lists, tmp_path):
    # What an epoch 1 interrupted before its checkpoint leaves: no run to
    # resume, so a new one may start there.
    (tmp_path / 'ck').mkdir()
    (tmp_path / 'ck' / 'history.csv').write_text('epoch,train_loss\n1,2.0\n')
    _, output = run_script(script, '--scratch', '--num_epochs', '1',
                           *small_run_flags(demo_lists, tmp_path))
    assert 'Random guessing scores 25.00%' in output
    assert 'Epoch 1/1: train loss' in output
    assert 'Best validation accuracy' in output
    history = read_history(str(tmp_path / 'ck'))
    assert list(history[0]) == training.HISTORY_COLUMNS
    assert len(history) == 1 and history[0]['epoch'] == '1'
    assert 0 <= float(history[0]['val_acc']) <= 1
    assert glob.glob(str(tmp_path / 'ck' / 'epoch-1.index'))
    assert glob.glob(str(tmp_path / 'ck' / 'best.index'))
    config = json.load(open(str(tmp_path / 'ck' / 'config.json')))
    assert config['mode'] == 'scratch' and config['num_classes'] == 4
    assert glob.glob(str(tmp_path / 'tb' / 'events.out.tfevents.*'))


def test_finetune_resume_and_no_silent_overwrite(demo_lists, tmp_path):
    """Fine-tune from a weights file, resume for a second epoch, and refuse
    to start a new run over an old one."""
    import weights
    weights_path = str(tmp_path / 'bvlc_alexnet.npz')
    rng = np.random.default_rng(0)
    weights.save_npz({name: {'weights': (rng.standard_normal(shape['weights']) * 0.01).astype(np.float32),
                             'biases': np.zeros(shape['biases'], np.float32)}
                      for name, shape in weights.ALEXNET_SHAPES.items()},
                     weights_path)
    flags = small_run_flags(demo_lists, tmp_path) + ['--weights_path', weights_path]
    _, output = run_script('finetune.py', '--num_epochs', '1', *flags)
    assert 'from ImageNet weights (fine-tuning)' in output
    first = read_history(str(tmp_path / 'ck'))
    assert json.load(open(str(tmp_path / 'ck' / 'config.json')))['mode'] == 'finetune'

    _, output = run_script('finetune.py', '--num_epochs', '2', '--resume', *flags)
    assert 'Resuming from' in output and '1 epochs done' in output
    assert 'Epoch 1/2' not in output and 'Epoch 2/2: train loss' in output
    history = read_history(str(tmp_path / 'ck'))
    assert [row['epoch'] for row in history] == ['1', '2']
    assert history[0] == first[0]

    code, output = run_script('finetune.py', '--num_epochs', '1', *flags,
                              check=False)
    assert code != 0 and 'already holds a run' in output and '--resume' in output
    code, output = run_script('finetune.py', '--num_epochs', '3', '--resume',
                              *(flags + ['--batch_size', '4']), check=False)
    assert code != 0 and 'would change settings' in output
    assert 'batch_size: 8 in the run, 4 now' in output
    assert len(read_history(str(tmp_path / 'ck'))) == 2


def test_a_mismatched_weights_file_stops_before_training(demo_lists, tmp_path):
    import weights
    weights_path = str(tmp_path / 'small.npz')
    weights.save_npz({name: {part: np.zeros(shape, np.float32)
                             for part, shape in parts.items()}
                      for name, parts in weights.ALEXNET_SHAPES.items()},
                     weights_path)
    code, output = run_script('finetune.py', '--num_epochs', '1',
                              '--weights_path', weights_path, '--skip_layer=',
                              *small_run_flags(demo_lists, tmp_path), check=False)
    assert code != 0 and 'Traceback' not in output
    assert "keep 'fc8' in skip_layer" in output
    assert not (tmp_path / 'ck').exists()


def test_a_nan_loss_stops_the_run_with_advice(demo_lists):
    from alexnet import tf, variable
    config = training.Config(train_file=demo_lists[0], val_file=demo_lists[1],
                             replacementpath='', num_classes=4, seed=1,
                             scratch=True, skip_layer=[], weights_path='',
                             train_layers=list(training.LAYERS),
                             weight_decay=5e-4, momentum=0.9, batch_size=8,
                             num_epochs=1, display_step=1, dropout_rate=0.5,
                             learning_rate=0.001)
    train_data, _ = training.open_data(config, 'opencv')
    graph = training.build_graph(config)
    with tf.Session() as sess:
        sess.run(graph.init)
        variable('fc8', 'biases').load(np.full(4, np.nan), sess)
        with pytest.raises(FloatingPointError) as error:
            training.train_epoch(sess, graph, train_data, config, epoch=1)
    assert 'epoch 1, step 1' in str(error.value)
    assert '--learning_rate 0.0001' in str(error.value)


def test_demo_learns_well_above_chance():
    """`python finetune.py --demo`: generated data, from scratch, a minute."""
    _, output = run_script('finetune.py', '--demo')
    best = [line for line in output.splitlines()
            if line.startswith('Best validation accuracy')]
    accuracy = float(best[0].split()[3].rstrip('%'))
    assert accuracy >= 50.0, output[-2000:]  # chance is 25%


def test_the_graph_subtracts_the_mean_of_uint8_pixels():
    """Feeding uint8 pixels to `pixels` gives the logits of feeding float32
    images minus the mean to the network's input `x`; feeding float32
    batches to `pixels` is refused, not wrapped around."""
    from alexnet import tf
    from datagenerator import IMAGENET_MEAN_BGR, check_dtype
    config = training.Config(num_classes=4, seed=1, scratch=True,
                             skip_layer=[], weights_path='',
                             train_layers=['fc8'], weight_decay=5e-4,
                             momentum=0.9)
    graph = training.build_graph(config)
    pixels = np.random.default_rng(0).integers(0, 256, (2, 227, 227, 3),
                                               dtype=np.uint8)
    with tf.Session(config=training.session_config()) as sess:
        sess.run(graph.init)
        from_pixels = sess.run(graph.model.fc8, {graph.pixels: pixels})
        centred = pixels.astype(np.float32) - IMAGENET_MEAN_BGR
        from_centred = sess.run(graph.model.fc8, {graph.x: centred})
    np.testing.assert_allclose(from_pixels, from_centred, rtol=1e-5,
                               atol=1e-5 * np.abs(from_centred).max())
    assert np.abs(from_pixels).max() > 0
    with pytest.raises(TypeError, match='mean=None'):
        check_dtype(centred, graph.pixels, 'val.txt')


def test_the_session_keeps_no_constant_the_size_of_a_weight():
    """Constant folding would turn the zeros that initialise fc7's
    momentum (67 MB) into a constant the session keeps; session_config
    turns it off, so they are filled when needed and freed."""
    from alexnet import tf
    config = training.Config(num_classes=4, seed=1, scratch=True,
                             skip_layer=[], weights_path='',
                             train_layers=['fc7', 'fc8'], weight_decay=5e-4,
                             momentum=0.9)
    graph = training.build_graph(config)

    def large_outputs(session_config):
        """{node: op type} of the init run's outputs over 50 MB."""
        metadata = tf.RunMetadata()
        with tf.Session(config=session_config) as sess:
            sess.run(graph.init, run_metadata=metadata, options=tf.RunOptions(
                trace_level=tf.RunOptions.FULL_TRACE))
        return {node.node_name: node.timeline_label.split('= ')[-1]
                .split('(')[0] for device in metadata.step_stats.dev_stats
                for node in device.node_stats if any(
                    output.tensor_description.allocation_description
                    .requested_bytes > 50e6 for output in node.output)}
    zeros = 'fc7/weights/Momentum/Initializer/zeros'
    # (With a default session, TF 2.21 makes this node a 'Const'.)
    assert large_outputs(training.session_config())[zeros] == 'Fill'


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


@pytest.mark.parametrize('train_layers', [
    list(training.LAYERS), ['conv1', 'fc8'], ['fc6', 'fc7', 'fc8'],
    ['conv2', 'conv4']])
def test_no_variable_changes_before_every_op_of_the_step_reading_it(
        train_layers):
    """TF1 variables are read when an op runs: an update that could run
    before an op reading the variable (through its `read` alias, or the
    Split of a grouped conv) would leak the new value into the step."""
    from alexnet import tf, variable
    config = training.Config(num_classes=4, seed=1, scratch=True,
                             skip_layer=[], weights_path='',
                             train_layers=train_layers, weight_decay=5e-4,
                             momentum=0.9)
    graph = training.build_graph(config)
    step = ancestors([graph.train_op, graph.loss.op, graph.correct.op])
    updates = [op for op in step if op.type == 'ApplyMomentum']
    assert len(updates) == 2 * len(train_layers)
    for layer in train_layers:
        for kind in ('weights', 'biases'):
            var = variable(layer, kind).op
            update, = [op for op in updates if op.inputs[0].op is var]
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


def test_one_step_is_caffes_sgd_with_rate_multipliers_and_decay():
    """Fine-tuning fc7 and fc8: weights move by lr * mult * (grad + decay *
    w), biases at 2x without decay, the fresh fc8 at 10x; others stay."""
    from alexnet import tf, variable
    config = training.Config(num_classes=4, seed=1, scratch=False,
                             skip_layer=['fc8'], weights_path='',
                             train_layers=['fc7', 'fc8'], weight_decay=5e-4,
                             momentum=0.9, new_layer_lr_mult=10.0)
    graph = training.build_graph(config)
    rng = np.random.default_rng(0)
    feed = {graph.x: rng.normal(0, 60, (3, 227, 227, 3)).astype(np.float32),
            graph.y: np.eye(4)[[0, 1, 3]], graph.learning_rate: 0.01}
    names = ['conv5/weights', 'fc7/weights', 'fc7/biases', 'fc8/weights',
             'fc8/biases']
    variables = [variable(*name.split('/')) for name in names]
    gradients = tf.gradients(graph.loss, variables[1:])
    with tf.Session() as sess:
        sess.run(graph.init)
        graph.model.loaded_layers = list(training.LAYERS[:-1])  # fc8 is new
        training.set_rate_multipliers(sess, graph, config)
        before = sess.run(variables)
        grads = sess.run(gradients, feed)
        sess.run(graph.train_op, feed)
        after = sess.run(variables)
    np.testing.assert_array_equal(after[0], before[0])  # conv5: not trained
    for name, w, w_new, grad, mult in zip(names[1:], before[1:], after[1:],
                                          grads, [1, 2, 10, 20]):
        decay = config.weight_decay * w if name.endswith('weights') else 0
        expected = w - 0.01 * mult * (grad + decay)
        np.testing.assert_allclose(w_new, expected, rtol=1e-4,
                                   atol=1e-6 * np.abs(w).max(), err_msg=name)
        assert np.abs(w_new - w).max() > 0  # it did move
