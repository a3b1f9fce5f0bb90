"""predict.py and evaluate.py on run folders that were moved or copied, on
damaged files of every kind, and on many images (streaming).

A damaged input must end with a message that names the file and an exit
status, never a traceback: run_main lets any exception other than
SystemExit fail the test.
"""
import json
import os
import re
import shutil
import weakref

import numpy as np
import pytest

import evaluate
import export_model
import extract_features
import inference
import predict
from alexnet import tf
from datagenerator import read_list
from tiny_runs import CLASS_NAMES, make_images, run_main, save_checkpoint


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    """Eight generated images and their list; a run folder (absolute path)
    with `best` and `epoch-2` of different weights, and a config.json."""
    folder = str(tmp_path_factory.mktemp('predict'))
    _, val_list = make_images(folder, train_per_class=0, val_per_class=2)
    run = os.path.join(folder, 'run')
    save_checkpoint(os.path.join(run, 'best'), 4, seed=1, momentum=False)
    save_checkpoint(os.path.join(run, 'epoch-2'), 4, seed=2, momentum=False)
    with open(os.path.join(run, 'config.json'), 'w') as f:
        json.dump({'replacementpath': ''}, f)
    names = os.path.join(folder, 'names.txt')
    with open(names, 'w') as f:
        f.write('\n'.join(CLASS_NAMES) + '\n')
    yield dict(folder=folder, run=run, val_list=val_list, names=names,
               images=read_list(val_list)[0])
    shutil.rmtree(folder, ignore_errors=True)


def link_copy(source, destination):
    """Copy a folder as hard links: no disk space, the same files. Write
    new files (never into these) to change one."""
    shutil.copytree(source, destination, copy_function=os.link)
    return destination


def remove_checkpoint(prefix):
    folder, name = os.path.split(prefix)
    for file_name in os.listdir(folder):
        if file_name.startswith(name + '.'):
            os.remove(os.path.join(folder, file_name))


def assert_refused(status, err, *names):
    """An exit with a message (not a traceback) that names every name."""
    assert isinstance(status, str), (status, err)
    assert 'Traceback' not in err + status
    for name in names:
        assert name in status, (name, status)


# ---------------------------------------------------------------------------
# Run folders: their own files, wherever they are
# ---------------------------------------------------------------------------


def test_latest_checkpoint_is_the_largest_number_epoch_after_interrupted(
        tmp_path):
    def touch(*names):
        for name in names:
            (tmp_path / name).write_bytes(b'')
    folder = str(tmp_path)
    assert inference.latest_checkpoint(folder) is None
    touch('epoch-2.index', 'epoch-9.index', 'interrupted-9.index')
    assert inference.latest_checkpoint(folder) == str(tmp_path / 'epoch-9')
    touch('interrupted-10.index')  # stopped inside epoch 10
    assert inference.latest_checkpoint(folder) == str(
        tmp_path / 'interrupted-10')
    touch('epoch-10.index')  # ... and resumed: epoch 10 is done
    assert inference.latest_checkpoint(folder) == str(tmp_path / 'epoch-10')
    # Not checkpoints: a save in progress, other digits, a folder, no number.
    touch('epoch-50.index.tempstate123', 'epoch-\u0663\u0663.index',
          'epoch-.index', 'epoch-60.data-00000-of-00001')
    (tmp_path / 'epoch-70.index').mkdir()
    assert inference.latest_checkpoint(folder) == str(tmp_path / 'epoch-10')
    assert inference.best_checkpoint(folder) is None
    assert inference.find_checkpoint(folder) == str(tmp_path / 'epoch-10')
    touch('best.index')
    assert inference.best_checkpoint(folder) == str(tmp_path / 'best')
    assert inference.find_checkpoint(folder) == str(tmp_path / 'best')


def test_a_copied_run_folder_uses_its_own_checkpoints(world, tmp_path):
    copy = link_copy(world['run'], str(tmp_path / 'copy'))
    remove_checkpoint(os.path.join(copy, 'best'))
    # TensorFlow's note in the copy still names the original's checkpoint.
    original = os.path.join(world['run'], 'epoch-2')
    assert tf.train.latest_checkpoint(copy) == original
    assert inference.find_checkpoint(copy) == os.path.join(copy, 'epoch-2')
    out, err, status = run_main(evaluate.main, [copy, '--list',
                                                world['val_list']])
    assert status == 0, err
    assert re.search('^%s ' % re.escape(os.path.join(copy, 'epoch-2')), out,
                     re.M)
    assert world['run'] not in out


def test_a_moved_run_folder_works_where_it_is(world, tmp_path):
    before = link_copy(world['run'], str(tmp_path / 'before'))
    # As if the run had been made here, with an absolute checkpoint_path.
    tf.train.update_checkpoint_state(before, os.path.join(before, 'epoch-2'))
    after = str(tmp_path / 'after')
    os.rename(before, after)
    assert inference.find_checkpoint(after) == os.path.join(after, 'best')
    remove_checkpoint(os.path.join(after, 'best'))
    assert tf.train.latest_checkpoint(after) is None  # its note: gone
    assert inference.find_checkpoint(after) == os.path.join(after, 'epoch-2')
    image = world['images'][0]
    moved, err, status = run_main(predict.main, [
        image, '--checkpoint', after, '--class_names', world['names']])
    assert status == 0, err
    here, _, _ = run_main(predict.main, [
        image, '--checkpoint', os.path.join(world['run'], 'epoch-2'),
        '--class_names', world['names']])
    assert moved == here and 'red disc' in moved
    out, err, status = run_main(evaluate.main, [after, '--list',
                                                world['val_list']])
    assert status == 0, err
    assert os.path.join(after, 'epoch-2') in out


# ---------------------------------------------------------------------------
# Damaged checkpoints, config.json, exports, class names, lists; flags
# ---------------------------------------------------------------------------


def rewrite(path, change):
    """Replace a (hard-linked) file by a new one holding change(bytes)."""
    with open(path, 'rb') as f:
        data = f.read()
    os.remove(path)  # the link, not the original's data
    with open(path, 'wb') as f:
        f.write(change(data))


DATA = 'best.data-00000-of-00001'
DAMAGED_CHECKPOINTS = {
    'index cut short': ('best.index', lambda data: data[:100]),
    'index empty': ('best.index', lambda data: b''),
    'index garbage': ('best.index', lambda data: bytes(range(256)) * 3),
    'data cut short': (DATA, lambda data: data[:len(data) // 2]),
    'data empty': (DATA, lambda data: b''),
    'data with a byte changed': (DATA, lambda data: data[:999] + bytes(
        [data[999] ^ 0xff]) + data[1000:]),
    'data missing': (DATA, None),
}


@pytest.mark.parametrize('damage', sorted(DAMAGED_CHECKPOINTS))
def test_a_damaged_checkpoint_is_named(world, tmp_path, damage):
    run = link_copy(world['run'], str(tmp_path / 'run'))
    file_name, change = DAMAGED_CHECKPOINTS[damage]
    if change is None:
        os.remove(os.path.join(run, file_name))
    else:
        rewrite(os.path.join(run, file_name), change)
    prefix = os.path.join(run, 'best')
    _, err, status = run_main(predict.main, [world['images'][0],
                                             '--checkpoint', run])
    assert_refused(status, err, prefix, 'epoch-N')
    _, err, status = run_main(evaluate.main, [run, '--list',
                                              world['val_list']])
    assert_refused(status, err, prefix)


def save_variables(prefix, shapes):
    """A checkpoint of zero-filled variables {name: shape}."""
    with tf.Graph().as_default():
        for name, shape in shapes.items():
            tf.Variable(np.zeros(shape, np.float32), name=name)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            return tf.train.Saver().save(sess, prefix)


@pytest.mark.parametrize('variables, message', [
    ({'conv1/weights': [3]}, 'holds no AlexNet: it lacks the variables '
                             'conv1/biases'),
    ({'%s/%s' % (layer, kind): [2] for layer in inference.LAYERS
      for kind in ('weights', 'biases')},
     "conv1/weights in {} has the shape (2,), AlexNet's is (11, 11, 3, 96)"),
    ({'%s/%s' % (layer, kind): [] for layer in inference.LAYERS
      for kind in ('weights', 'biases')}, 'fc8/biases in {} has the shape')])
def test_a_checkpoint_of_another_network_is_named(tmp_path, variables,
                                                  message):
    prefix = save_variables(str(tmp_path / 'other'), variables)
    _, err, status = run_main(predict.main, ['any.jpg', '--checkpoint',
                                             prefix])
    assert_refused(status, err, prefix, message.format(prefix))


DAMAGED_CONFIGS = {
    'cut short': b'{"replacementpath": "da',
    'not UTF-8': b'{"replacementpath": "caf\xe9"}',
    'binary': bytes(range(256)),
    'a list': b'["data"]',
    'nested too deep': b'[' * 100000,
    'a number for the folder': b'{"replacementpath": 5}',
}


@pytest.mark.parametrize('damage', sorted(DAMAGED_CONFIGS))
def test_a_damaged_config_json_is_named_unless_not_needed(world, tmp_path,
                                                          damage):
    run = link_copy(world['run'], str(tmp_path / 'run'))
    rewrite(os.path.join(run, 'config.json'),
            lambda data: DAMAGED_CONFIGS[damage])
    _, err, status = run_main(evaluate.main, [run, '--list',
                                              world['val_list']])
    assert_refused(status, err, 'config.json', '--replacementpath')
    if damage == 'cut short':  # read only for the images' folder
        _, err, status = run_main(evaluate.main, [
            run, '--list', world['val_list'], '--replacementpath', ''])
        assert status == 0, err


def test_config_json_that_is_a_folder(world, tmp_path):
    run = link_copy(world['run'], str(tmp_path / 'run'))
    os.remove(os.path.join(run, 'config.json'))
    os.mkdir(os.path.join(run, 'config.json'))
    with pytest.raises(inference.RunFolderError, match='config.json'):
        inference.images_folder(None, run)


@pytest.fixture(scope='module')
def export(world):
    """tools/export_model.py's export of the run's best checkpoint."""
    folder = os.path.join(world['folder'], 'export')
    _, err, status = run_main(export_model.main, [
        world['run'], folder, '--class_names', world['names']])
    assert status == 0, err
    return folder


DAMAGED_EXPORTS = {
    'graph cut short': ('frozen_graph.pb', lambda d: d[:len(d) // 2]),
    'graph garbage': ('frozen_graph.pb', lambda d: b'\xff' * 1000),
    'graph missing': ('frozen_graph.pb', None),
    'info cut short': ('model.json', lambda d: d[:len(d) // 2]),
    'info not UTF-8': ('model.json', lambda d: d.replace(b'red', b'r\xe9d')),
    'info a list': ('model.json', lambda d: b'[]'),
    'info missing': ('model.json', None),
    'info names another input': ('model.json', lambda d: d.replace(
        b'"images:0"', b'"nope:0"')),
    'info has too few names': ('model.json', lambda d: d.replace(
        b'"red disc",', b'')),
    'info names are numbers': ('model.json', lambda d: d.replace(
        b'"red disc"', b'5')),
}


@pytest.mark.parametrize('damage', sorted(DAMAGED_EXPORTS))
def test_a_damaged_export_is_named(world, export, tmp_path, damage):
    folder = link_copy(export, str(tmp_path / 'export'))
    file_name, change = DAMAGED_EXPORTS[damage]
    path = os.path.join(folder, file_name)
    if change is None:
        os.remove(path)
    else:
        rewrite(path, change)
    _, err, status = run_main(predict.main, [world['images'][0], '--export',
                                             folder])
    assert_refused(status, err, path)


@pytest.mark.parametrize('encoding', ['latin-1', 'utf-16', 'binary'])
def test_a_class_names_file_in_another_encoding_is_named(world, tmp_path,
                                                         encoding):
    names = tmp_path / 'names.txt'
    if encoding == 'binary':
        names.write_bytes(bytes(range(256)))
    else:
        names.write_bytes('Löwenzahn\nrose\niris\ntulpe\n'.encode(encoding))
    _, err, status = run_main(predict.main, [
        world['images'][0], '--checkpoint', world['run'],
        '--class_names', str(names)])
    assert_refused(status, err, str(names), 'UTF-8')


def test_a_class_names_file_with_a_bom_is_read(tmp_path):
    names = tmp_path / 'names.txt'
    names.write_bytes('\ufeffred\ngreen\n'.encode('utf-8'))
    assert inference.read_class_names(str(names), 2) == ['red', 'green']


@pytest.mark.parametrize('encoding', ['latin-1', 'utf-16', 'binary'])
def test_an_image_list_in_another_encoding_is_named(world, tmp_path,
                                                    encoding):
    listing = tmp_path / 'list.txt'
    if encoding == 'binary':
        listing.write_bytes(bytes(range(256)))
    else:
        listing.write_bytes('blüte.jpg 0\n'.encode(encoding))
    _, err, status = run_main(evaluate.main, [world['run'], '--list',
                                              str(listing)])
    assert_refused(status, err, str(listing))


@pytest.mark.parametrize('value', ['0', '-3', 'x', '1_0', '\u0663'])
@pytest.mark.parametrize('script', [evaluate, predict, extract_features])
def test_batch_size_must_be_a_positive_whole_number(script, value, world):
    argv = {evaluate: [world['run']],
            predict: ['a.jpg', '--checkpoint', world['run']],
            extract_features: ['list.txt', 'out.npy', '--checkpoint',
                               world['run']]}[script]
    _, err, status = run_main(script.main, argv + ['--batch_size', value])
    assert status == 2  # argparse's refusal, before anything is read
    assert '--batch_size' in err and value in err
    assert 'Traceback' not in err


# ---------------------------------------------------------------------------
# Streaming: memory for a chunk of images, not for all of them
# ---------------------------------------------------------------------------


class FakeModel(object):
    """What iter_outputs needs of a Model: run(batch, layer) -> [n, 4]."""

    def run(self, batch, layer):
        return np.tile(batch.mean(axis=(1, 2, 3))[:, None], (1, 4))


def test_iter_outputs_holds_a_few_chunks_of_images_at_a_time(world,
                                                             monkeypatch):
    alive, peak = [0], [0]
    load_image = inference.load_image

    def counted_load_image(*args):
        image = load_image(*args)
        alive[0] += 1
        weakref.finalize(image, lambda: alive.__setitem__(0, alive[0] - 1))
        return image

    monkeypatch.setattr(inference, 'load_image', counted_load_image)
    paths = world['images'] * 10  # 80 images, 800 views
    seen = []
    for chunk in inference.iter_outputs([FakeModel()], paths, batch_size=20,
                                        ten_crop=True):
        assert len(chunk.paths) == 2  # 20 views: two images of ten
        assert chunk.outputs[0].shape == (2, 4)
        seen += chunk.paths
        peak[0] = max(peak[0], alive[0])
    assert seen == paths
    assert peak[0] <= 10  # chunks: queued (2), waiting (1), in use (1)


def test_predict_prints_the_same_for_any_batch_size(world, tmp_path):
    broken = str(tmp_path / 'broken.jpg')
    with open(broken, 'wb') as f:
        f.write(b'\xff\xd8\xff not a JPEG')
    images = world['images'][:2] + [broken] + world['images'][2:3]
    outputs = {}
    for batch_size in ('10', '64'):  # chunks of one image; all at once
        out, err, status = run_main(predict.main, images + [
            '--checkpoint', world['run'], '--ten_crop', '--top', '4',
            '--batch_size', batch_size, '--class_names', world['names']])
        assert status == 'predict.py: 1 of 4 images could not be read'
        assert broken in err and 'Traceback' not in err
        outputs[batch_size] = out
    assert outputs['10'] == outputs['64']
    printed = [line[:-1] for line in outputs['10'].splitlines()
               if line.endswith(':')]
    assert printed == [path for path in images if path != broken]
    # The numbers of all views stacked at once, as predict.py did before.
    with inference.Model.from_checkpoint(world['run']) as model:
        views = np.stack([inference.load_views(path, ten_crop=True)
                          for path in printed])
        expected = inference.run_views([model], views)[0]
    first = [float(p) for p in re.findall(r'([\d.]+)%', outputs['10'])[:4]]
    assert first == sorted(first, reverse=True)
    np.testing.assert_allclose(first, 100 * np.sort(expected[0])[::-1],
                               atol=0.006)
