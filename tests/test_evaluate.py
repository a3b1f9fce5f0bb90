"""evaluate.py and the feature extractor on a model trained here for two
short epochs on generated images (predict.py and the export:
test_export_model.py).

Every number is checked against a computation that does not use
inference.py: AlexNet restored by hand, images cropped by hand, the
measures counted in loops.
"""
import csv
import os
import re
import shutil

import numpy as np
import pytest

import evaluate
import extract_features
import inference
from alexnet import AlexNet, tf
from datagenerator import IMAGENET_MEAN_BGR, load_image, read_list
from tiny_runs import (CLASS_NAMES, centre_crops, make_images, make_run,
                       reference_outputs, run_main)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def train_demo_run(folder):
    """A run folder trained on generated images; returns (run folder,
    validation list)."""
    train_file, val_file = make_images(folder, train_per_class=8,
                                       val_per_class=4)
    run = make_run(os.path.join(folder, 'run'), train_file, len(CLASS_NAMES))
    return run, val_file


def percent(value):
    return '%.2f%%' % (100 * value)


# ---------------------------------------------------------------------------
# Fixtures: one trained run, evaluated once
# ---------------------------------------------------------------------------


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    """The trained run, its validation list, a class names file, and the
    reference outputs of its best checkpoint for the validation images."""
    folder = str(tmp_path_factory.mktemp('demo'))
    run, val_list = train_demo_run(folder)
    names_file = os.path.join(folder, 'names.txt')
    with open(names_file, 'w') as f:
        f.write('\n'.join(CLASS_NAMES) + '\n')
    images, labels = centre_crops(val_list)
    reference = reference_outputs(os.path.join(run, 'best'),
                                  len(CLASS_NAMES), images)
    yield dict(folder=folder, run=run, val_list=val_list, names=names_file,
               images=images, labels=labels, reference=reference)
    shutil.rmtree(folder, ignore_errors=True)  # about 1.5 GB of checkpoints


@pytest.fixture(scope='module')
def evaluated(demo):
    """evaluate.py on the run folder: its printout, logits and CSV."""
    logits = os.path.join(demo['folder'], 'logits.npz')
    confusion = os.path.join(demo['folder'], 'confusion.csv')
    out, err, status = run_main(evaluate.main, [
        demo['run'], '--list', demo['val_list'], '--class_names',
        demo['names'], '--save_logits', logits, '--confusion_csv', confusion])
    assert status == 0, err
    return dict(out=out, saved=dict(np.load(logits)), confusion=confusion)


# ---------------------------------------------------------------------------
# evaluate.py
# ---------------------------------------------------------------------------


def test_saved_outputs_are_the_networks_softmax_in_list_order(demo, evaluated):
    saved = evaluated['saved']
    np.testing.assert_array_equal(saved['labels'], demo['labels'])
    np.testing.assert_allclose(saved['probabilities'],
                               demo['reference']['probabilities'],
                               rtol=1e-4, atol=1e-6)
    assert str(saved['checkpoints'][0]) == os.path.join(demo['run'], 'best')


def test_numbers_recomputed_from_the_saved_outputs(demo, evaluated):
    probabilities = evaluated['saved']['probabilities']
    labels = evaluated['saved']['labels']
    count, num_classes = probabilities.shape
    # Counted one image at a time, without evaluate.py's functions.
    confusion = [[0] * num_classes for _ in range(num_classes)]
    top1 = top5 = 0
    for row, label in zip(probabilities, labels):
        ranked = sorted(range(num_classes), key=lambda c: -row[c])
        top1 += ranked[0] == label
        top5 += label in ranked[:5]
        confusion[label][ranked[0]] += 1
    per_class = [confusion[c][c] / sum(confusion[c])
                 for c in range(num_classes) if sum(confusion[c])]
    expected_line = '%s  %7s  %7s  %9s' % (
        os.path.join(demo['run'], 'best'), percent(top1 / count),
        percent(top5 / count), percent(sum(per_class) / len(per_class)))
    assert expected_line in evaluated['out']

    # The confusion matrix CSV, rows true and columns predicted.
    with open(evaluated['confusion']) as f:
        rows = list(csv.reader(f))
    assert rows[0][1:] == CLASS_NAMES
    assert [row[0] for row in rows[1:]] == CLASS_NAMES
    assert [[int(v) for v in row[1:]] for row in rows[1:]] == confusion

    # The most confused pairs: the largest off-diagonal counts, with names.
    mistakes = sorted(((confusion[t][p], t, p) for t in range(num_classes)
                       for p in range(num_classes)
                       if t != p and confusion[t][p]), reverse=True)[:5]
    printed = re.findall(r'  (.+) \((\d)\) -> (.+) \((\d)\): (\d+) of (\d+)',
                         evaluated['out'])
    assert len(printed) == len(mistakes)
    assert [int(p[4]) for p in printed] == [m[0] for m in mistakes]
    for true_name, true, predicted_name, predicted, images, total in printed:
        true, predicted = int(true), int(predicted)
        assert confusion[true][predicted] == int(images)
        assert sum(confusion[true]) == int(total)
        assert (true_name, predicted_name) == (CLASS_NAMES[true],
                                               CLASS_NAMES[predicted])


def test_measures_on_a_hand_made_example():
    probabilities = np.array([[.5, .3, .2, 0, 0, 0],         # 0: right
                              [.1, .05, .2, .3, .35, 0],     # 0: 4th
                              [.05, .01, .1, .2, .3, .34],   # 0: 5th
                              [.01, .05, .1, .2, .3, .34],   # 0: 6th
                              [.9, .1, 0, 0, 0, 0]])         # 1: 2nd
    labels = np.array([0, 0, 0, 0, 1])
    m = evaluate.measures(probabilities, labels)
    assert m['top1'] == pytest.approx(1 / 5)
    assert m["top5"] == pytest.approx(4 / 5)
    assert m['per_class'] == pytest.approx((1 / 4 + 0) / 2)  # classes 0, 1
    assert evaluate.most_confused(m['confusion']) == [
        (0, 5, 2), (0, 4, 1), (1, 0, 1)]


def test_an_ensemble_of_a_model_with_itself_equals_the_model(demo, evaluated):
    logits = os.path.join(demo['folder'], 'self_ensemble.npz')
    out, err, status = run_main(evaluate.main, [
        demo['run'], demo['run'], '--list', demo['val_list'],
        '--save_logits', logits])
    assert status == 0, err
    saved = np.load(logits)
    np.testing.assert_allclose(saved['probabilities'],
                               evaluated['saved']['probabilities'],
                               rtol=1e-6, atol=1e-7)
    table = [line.split()[-3:] for line in out.splitlines()
             if line.startswith((demo['run'], 'ensemble of 2'))]
    assert len(table) == 3 and table[0] == table[1] == table[2]


def test_an_ensemble_averages_the_members_softmax_outputs(demo):
    members = [os.path.join(demo['run'], 'epoch-%d' % e) for e in (1, 2)]
    logits = os.path.join(demo['folder'], 'ensemble.npz')
    out, err, status = run_main(evaluate.main, members + [
        '--list', demo['val_list'], '--save_logits', logits])
    assert status == 0, err
    saved = np.load(logits)
    singles = [reference_outputs(m, len(CLASS_NAMES), demo['images'])
               ['probabilities'] for m in members]
    assert np.abs(singles[0] - singles[1]).max() > 1e-3  # two real members
    for member, single in zip(saved['member_probabilities'], singles):
        np.testing.assert_allclose(member, single, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(saved['probabilities'], np.mean(singles, 0),
                               rtol=1e-4, atol=1e-6)
    for member, single in zip(members, singles):
        top1 = np.mean(single.argmax(axis=1) == demo['labels'])
        assert re.search(re.escape(member) + r'\s+' + re.escape(percent(top1)),
                         out)
    assert 'ensemble of 2' in out


def test_ten_crop_is_the_mean_over_the_ten_views(demo, evaluated):
    logits = os.path.join(demo['folder'], 'ten_crop.npz')
    out, err, status = run_main(evaluate.main, [
        demo['run'], '--list', demo['val_list'], '--ten_crop',
        '--save_logits', logits])
    assert status == 0, err
    assert 'ten views' in out
    ten = np.load(logits)['probabilities']
    centre = evaluated['saved']['probabilities']
    assert np.abs(ten - centre).max() > 1e-4  # not the centre crop again
    np.testing.assert_allclose(ten.sum(axis=1), 1, rtol=1e-5)

    # The first image by hand: 4 corners and the centre of the 256x256
    # image, their mirrors, each through the net, the softmax averaged.
    image = load_image(str(np.load(logits)['paths'][0]))
    offsets = [(0, 0), (0, 29), (29, 0), (29, 29), (14, 14)]
    crops = [image[y:y + 227, x:x + 227] for y, x in offsets]
    crops += [crop[:, ::-1] for crop in crops]
    views = np.array(crops, dtype=np.float32) - IMAGENET_MEAN_BGR
    per_view = reference_outputs(os.path.join(demo['run'], 'best'),
                                 len(CLASS_NAMES), views)['probabilities']
    assert np.abs(per_view - per_view[0]).max() > 1e-4  # views do differ
    np.testing.assert_allclose(ten[0], per_view.mean(axis=0),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(per_view[4], centre[0], rtol=1e-4, atol=1e-6)


def test_progress_lines_while_predicting(demo, capsys):
    paths = read_list(demo['val_list'])[0]
    with inference.Model.from_checkpoint(demo['run']) as model:
        inference.predict_list([model], paths, batch_size=4, report_every=0)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4  # one per batch of 4 images, as asked here
    assert lines[-1].startswith('  16/16 images (100%)')
    assert 'img/s' in lines[0] and 's left' in lines[0]


def test_clear_errors_for_a_bad_checkpoint_or_missing_images(demo, tmp_path):
    _, err, status = run_main(evaluate.main, [str(tmp_path)])
    assert status and 'no checkpoint in the folder' in str(status)
    listing = tmp_path / 'list.txt'
    listing.write_text('gone/a.jpg 0\ngone/b.jpg 1\n')
    _, _, status = run_main(evaluate.main, [demo['run'], '--list',
                                            str(listing)])
    assert '2 of the 2 images' in str(status) and 'a.jpg' in str(status)
    image = read_list(demo['val_list'])[0][0]
    listing.write_text('%s 76\n' % image)  # a line of the 102 flowers' list
    _, _, status = run_main(evaluate.main, [demo['run'], '--list',
                                            str(listing)])
    assert 'labels up to 76, but the model has only 4 classes' in str(status)


def test_run_folder_means_best_and_files_mean_their_prefix(demo):
    run = demo['run']
    assert inference.find_checkpoint(run) == os.path.join(run, 'best')
    assert inference.find_checkpoint(os.path.join(run, 'epoch-2.index')) == \
        os.path.join(run, 'epoch-2')
    assert inference.find_checkpoint(
        os.path.join(run, 'epoch-1.data-00000-of-00001')) == \
        os.path.join(run, 'epoch-1')


# ---------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('layer', ['pool5', 'fc6', 'fc7', 'fc8'])
def test_features_equal_the_alexnet_attribute_of_the_layer(demo, layer):
    out = os.path.join(demo['folder'], '%s.npy' % layer)
    _, err, status = run_main(extract_features.main, [
        '--layer', layer, demo['val_list'], out, '--checkpoint', demo['run'],
        '--batch_size', '5'])  # batches of 5, 5, 5, 1: order across batches
    assert status == 0, err
    features = np.load(out)
    expected = demo['reference'][layer]
    assert features.shape == expected.shape
    assert features.shape[1] == {'pool5': 9216, 'fc6': 4096, 'fc7': 4096,
                                 'fc8': len(CLASS_NAMES)}[layer]
    np.testing.assert_allclose(features, expected, rtol=1e-4,
                               atol=1e-4 * np.abs(expected).max())
    np.testing.assert_array_equal(
        np.load(out.replace('.npy', '_labels.npy')), demo['labels'])


def test_features_into_one_npz_with_labels_and_paths(demo):
    out = os.path.join(demo['folder'], 'fc7.npz')
    _, err, status = run_main(extract_features.main, [
        demo['val_list'], out, '--checkpoint', demo['run']])
    assert status == 0, err
    saved = np.load(out)
    np.testing.assert_allclose(saved['features'], demo['reference']['fc7'],
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(saved['labels'], demo['labels'])
    assert list(saved['paths']) == read_list(demo['val_list'])[0]


def random_weights_file(path, num_classes=1000, seed=0):
    """A bvlc_alexnet.npy-style file (the Toronto layout) of random weights."""
    rng = np.random.default_rng(seed)
    shapes = {'conv1': (11, 11, 3, 96), 'conv2': (5, 5, 48, 256),
              'conv3': (3, 3, 256, 384), 'conv4': (3, 3, 192, 384),
              'conv5': (3, 3, 192, 256), 'fc6': (9216, 4096),
              'fc7': (4096, 4096), 'fc8': (4096, num_classes)}
    layers = {}
    for name, shape in shapes.items():
        scale = np.sqrt(2.0 / np.prod(shape[:-1]))
        if name == 'conv1':
            scale /= 60  # its input is in pixels (std about 60)
        layers[name] = [
            rng.standard_normal(shape, dtype=np.float32) * np.float32(scale),
            rng.standard_normal(shape[-1], dtype=np.float32) * 0.1]
    np.save(path, layers, allow_pickle=True)
    return layers


def test_features_from_an_imagenet_weights_file(demo):
    path = os.path.join(demo['folder'], 'random_alexnet.npy')
    layers = random_weights_file(path)
    with tf.Graph().as_default():
        tf.set_random_seed(0)  # training switched on op determinism
        x = tf.placeholder(tf.float32, [None, 227, 227, 3])
        net = AlexNet(x, 1.0, 1000, [], path)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            net.load_initial_weights(sess)
            fc7, fc8 = sess.run([net.fc7, net.fc8], {x: demo['images']})
    for layer, expected in (('fc7', fc7), ('fc8', fc8)):
        out = os.path.join(demo['folder'], 'imagenet_%s.npy' % layer)
        _, err, status = run_main(extract_features.main, [
            '--layer', layer, demo['val_list'], out, '--weights', path,
            '--replacementpath', ''])
        assert status == 0, err
        np.testing.assert_allclose(np.load(out), expected, rtol=1e-4,
                                   atol=1e-4 * np.abs(expected).max())
    assert fc8.shape[1] == layers['fc8'][1].shape[0] == 1000
    os.remove(path)
