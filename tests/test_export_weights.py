"""tools/export_weights.py: a run's weights in the bvlc_alexnet.npy layout,
read back through the restricted reader and loaded by AlexNet."""
import os
import shutil

import numpy as np
import pytest

import export_weights
import weights
from alexnet import AlexNet, LAYERS, tf
from tiny_runs import run_main, save_checkpoint

PARTS = ('weights', 'biases')


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """A run folder with a training checkpoint `best` (weights and momentum)
    and an older `epoch-3` of other weights; their variables' values."""
    folder = str(tmp_path_factory.mktemp('export_weights'))
    best = save_checkpoint(os.path.join(folder, 'best'), 4, seed=1)
    epoch_3 = save_checkpoint(os.path.join(folder, 'epoch-3'), 4, seed=2,
                              momentum=False)
    yield folder, best, epoch_3
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope='module')
def exported(run):
    """export_weights.py RUN OUT.npy: (OUT.npy, its printout)."""
    out = os.path.join(run[0], 'exported', 'mine.npy')
    os.mkdir(os.path.dirname(out))
    printed, err, status = run_main(export_weights.main, [run[0], out])
    assert not status, err
    return out, printed


def assert_file_holds(path, values):
    """The file, read by the restricted reader, holds exactly AlexNet's
    weights and biases with these values, as float32."""
    layers = weights.read_weights(path)
    assert sorted(layers) == sorted(LAYERS)
    for layer in LAYERS:
        for part in PARTS:
            array = layers[layer][part]
            assert array.dtype == np.float32
            np.testing.assert_array_equal(array,
                                          values['%s/%s' % (layer, part)])


def test_the_file_holds_the_best_checkpoints_weights_without_momentum(
        run, exported):
    folder, best, _ = run
    out, printed = exported
    assert_file_holds(out, best)
    assert os.path.join(folder, 'best') in printed
    # The momentum (all 7.0, as large again) is not in the file.
    size = sum(value.nbytes for value in best.values())
    assert size < os.path.getsize(out) < size + 10000
    raw = np.load(out, allow_pickle=True).item()  # our own file: trusted
    assert sorted(raw) == sorted(LAYERS)
    assert all(isinstance(raw[layer], list) and len(raw[layer]) == 2
               for layer in LAYERS)  # [W, b], as in bvlc_alexnet.npy


def test_a_net_of_other_classes_loads_it_with_fc8_skipped(run, exported):
    best, out = run[1], exported[0]
    with tf.Graph().as_default():
        tf.set_random_seed(5)
        x = tf.placeholder(tf.float32, [None, 227, 227, 3])
        net = AlexNet(x, 1.0, 7, ['fc8'], out)
        variables = {v.op.name: v for v in tf.global_variables()}
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            fresh_fc8 = sess.run(variables['fc8/weights'])
            net.load_initial_weights(sess)
            loaded = sess.run(variables)
    assert net.loaded_layers == list(LAYERS[:-1])
    for layer in LAYERS[:-1]:
        for part in PARTS:
            name = '%s/%s' % (layer, part)
            np.testing.assert_array_equal(loaded[name], best[name])
    assert loaded['fc8/weights'].shape == (4096, 7)  # the new task's
    np.testing.assert_array_equal(loaded['fc8/weights'], fresh_fc8)


def test_checkpoint_chooses_which_and_out_is_never_overwritten(run, tmp_path):
    folder, _, epoch_3 = run
    out = str(tmp_path / 'mine.npy')
    _, err, status = run_main(export_weights.main, [
        folder, out, '--checkpoint', 'epoch-3'])
    assert not status, err
    assert_file_holds(out, epoch_3)
    first = os.stat(out)
    _, _, status = run_main(export_weights.main, [folder, out])
    assert 'exists already' in str(status) and out in str(status)
    assert os.stat(out) == first  # not touched
    _, err, status = run_main(export_weights.main, [
        folder, out, '--force', '--checkpoint', 'latest'])
    assert not status, err
    assert os.stat(out).st_ino != first.st_ino  # a new file ...
    assert_file_holds(out, epoch_3)  # of the newest (and only) epoch-N


@pytest.mark.parametrize('name, message', [
    ('epoch-9', 'holds no epoch-9 checkpoint'),
    ('../best', "--checkpoint '../best': give best, latest"),
    ('interrupted-1', 'holds no interrupted-1 checkpoint')])
def test_a_checkpoint_that_is_not_there_is_named(run, tmp_path, name,
                                                 message):
    out = str(tmp_path / 'mine.npy')
    _, _, status = run_main(export_weights.main, [
        run[0], out, '--checkpoint', name])
    assert message in str(status)
    assert not os.path.exists(out)


def test_a_diverged_or_damaged_checkpoint_is_refused(tmp_path):
    values = {'conv3/weights': np.full((3, 3, 256, 384), np.nan, np.float32)}
    save_checkpoint(str(tmp_path / 'nan'), 4, momentum=False, values=values)
    out = str(tmp_path / 'mine.npy')
    _, _, status = run_main(export_weights.main, [str(tmp_path / 'nan'), out])
    assert 'conv3/weights' in str(status) and 'NaN' in str(status)
    with open(str(tmp_path / 'nan.index'), 'r+b') as f:
        f.truncate(100)
    _, _, status = run_main(export_weights.main, [str(tmp_path / 'nan'), out])
    assert 'nan.index is damaged' in str(status)
    assert not os.path.exists(out)
