"""predict.py and tools/export_model.py on a checkpoint of random weights
and generated images (and, when the real Oxford 102 images are present, on
a few of them with a 102-class model).

Every number is checked against AlexNet restored by hand
(tiny_runs.reference_outputs) or against plain TensorFlow.
"""
import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

import evaluate
import export_model
import inference
import predict
from alexnet import tf
from tiny_runs import (CLASS_NAMES, centre_crops, make_images,
                       reference_outputs, run_main, save_checkpoint)


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    """A run folder with a `best` of random weights, eight generated images
    (val.txt), a class names file, and the reference outputs of the
    images' centre crops."""
    folder = str(tmp_path_factory.mktemp('export_model'))
    _, val_list = make_images(folder, train_per_class=0, val_per_class=2)
    run = os.path.join(folder, 'run')
    save_checkpoint(os.path.join(run, 'best'), len(CLASS_NAMES),
                    momentum=False)
    names_file = os.path.join(folder, 'names.txt')
    with open(names_file, 'w') as f:
        f.write('\n'.join(CLASS_NAMES) + '\n')
    images = centre_crops(val_list)[0]
    reference = reference_outputs(os.path.join(run, 'best'),
                                  len(CLASS_NAMES), images)
    yield dict(folder=folder, run=run, names=names_file, images=images,
               reference=reference)
    shutil.rmtree(folder, ignore_errors=True)


def percent(value):
    return '%.2f%%' % (100 * value)


# ---------------------------------------------------------------------------
# predict.py and the export
# ---------------------------------------------------------------------------


def write_images_of_several_formats(folder):
    """The same picture as RGBA PNG, grayscale JPEG, palette PNG and 16-bit
    grayscale PNG, plus a file that is not an image."""
    rgb = np.asarray(Image.open(os.path.join(folder, 'images',
                                             'val_0_000.jpg')))
    paths = {}
    alpha = np.full(rgb.shape[:2] + (1,), 200, np.uint8)
    images = {'rgba.png': Image.fromarray(np.concatenate([rgb, alpha], 2),
                                          'RGBA'),
              'gray.jpg': Image.fromarray(rgb).convert('L'),
              'palette.png': Image.fromarray(rgb).convert('P'),
              'gray16.png': Image.fromarray(
                  rgb[:, :, 0].astype(np.uint16) * 257)}
    for name, image in images.items():
        paths[name] = os.path.join(folder, name)
        image.save(paths[name])
    assert Image.open(paths['palette.png']).mode == 'P'
    paths['broken.jpg'] = os.path.join(folder, 'broken.jpg')
    with open(paths['broken.jpg'], 'wb') as f:
        f.write(b'\xff\xd8\xff not really a JPEG')
    return paths


def parse_predictions(out):
    """{image: [(probability, name), ...]} from predict.py's printout."""
    result, current = {}, None
    for line in out.splitlines():
        match = re.match(r'^\s+([\d.]+)%  (.+)$', line)
        if match:
            result[current].append((float(match.group(1)), match.group(2)))
        elif line.endswith(':'):
            current = line[:-1]
            result[current] = []
    return result


def test_predict_names_flowers_in_images_of_any_format(demo):
    paths = write_images_of_several_formats(demo['folder'])
    out, err, status = run_main(predict.main, list(paths.values()) + [
        '--checkpoint', demo['run'], '--class_names', demo['names']])
    predictions = parse_predictions(out)
    readable = [p for name, p in paths.items() if name != 'broken.jpg']
    assert sorted(predictions) == sorted(readable)
    for path in readable:
        rows = predictions[path]
        assert len(rows) == len(CLASS_NAMES)  # top 5 of 4 classes: all 4
        assert sorted(name for _, name in rows) == sorted(CLASS_NAMES)
        assert [p for p, _ in rows] == sorted((p for p, _ in rows),
                                              reverse=True)
        assert sum(p for p, _ in rows) == pytest.approx(100, abs=0.05)
    # The broken file: its own message, the others still predicted.
    assert 'broken.jpg' in err and 'cannot decode' in err
    assert status and '1 of 5 images could not be read' in str(status)
    # The RGBA picture is the picture: the probabilities the net gives it.
    views = inference.load_views(paths['rgba.png'])
    expected = reference_outputs(os.path.join(demo['run'], 'best'),
                                 len(CLASS_NAMES), views)['probabilities'][0]
    for probability, name in predictions[paths['rgba.png']]:
        assert probability == pytest.approx(
            100 * expected[CLASS_NAMES.index(name)], abs=0.006)


def test_export_then_predict_gives_the_checkpoints_probabilities(demo):
    export_dir = os.path.join(demo['folder'], 'export')
    _, err, status = run_main(export_model.main, [
        demo['run'], export_dir, '--class_names', demo['names']])
    assert status == 0, err
    with open(os.path.join(export_dir, 'model.json')) as f:
        info = json.load(f)
    assert info['input'] == 'images:0' and info['output'] == 'probabilities:0'
    assert info['num_classes'] == 4 and info['class_names'] == CLASS_NAMES

    # A plain TensorFlow user: the GraphDef alone, no kit code.
    graph_def = tf.GraphDef()
    with open(os.path.join(export_dir, 'frozen_graph.pb'), 'rb') as f:
        graph_def.ParseFromString(f.read())
    assert not [n for n in graph_def.node if 'Variable' in n.op]
    config = tf.ConfigProto()  # Grappler off: see frozen_graph_session_config
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    with tf.Graph().as_default() as graph:
        tf.import_graph_def(graph_def, name='')
        with tf.Session(config=config) as sess:
            images = graph.get_tensor_by_name('images:0')
            assert images.shape.as_list() == [None, 227, 227, 3]
            exported = sess.run('probabilities:0', {images: demo['images']})
    np.testing.assert_allclose(exported, demo['reference']['probabilities'],
                               rtol=1e-4, atol=1e-6)

    # predict.py with the export prints what it prints with the checkpoint,
    # and takes the class names from the export.
    image = os.path.join(demo['folder'], 'images', 'val_1_000.jpg')
    from_export, err, status = run_main(predict.main, [image, '--export',
                                                       export_dir])
    assert status == 0, err
    from_checkpoint, _, _ = run_main(predict.main, [
        image, '--checkpoint', demo['run'], '--class_names', demo['names']])
    assert from_export == from_checkpoint
    assert 'green square' in from_export


# ---------------------------------------------------------------------------
# Real Oxford 102 images, when they are here
# ---------------------------------------------------------------------------


@pytest.fixture(scope='module')
def flower_model(tmp_path_factory):
    """A 102-class model, freshly initialised, saved with momentum slots
    as a training checkpoint."""
    folder = str(tmp_path_factory.mktemp('flowers'))
    prefix = os.path.join(folder, 'init')
    save_checkpoint(prefix, 102)
    yield folder, prefix
    shutil.rmtree(folder, ignore_errors=True)


def test_real_flowers_evaluate_and_predict(flowers, flower_model):
    folder, prefix = flower_model
    jpg = os.path.join(flowers, 'jpg')
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, 'testfile.txt')) as f:
        lines = [line for line in f
                 if os.path.isfile(os.path.join(jpg, os.path.basename(
                     line.split()[0])))][:24]
    assert len(lines) >= 10
    listing = os.path.join(folder, 'test_sample.txt')
    with open(listing, 'w') as f:
        f.writelines(lines)
    logits = os.path.join(folder, 'logits.npz')
    out, err, status = run_main(evaluate.main, [
        prefix, '--list', listing, '--replacementpath', jpg,
        '--save_logits', logits])
    assert status == 0, err
    saved = np.load(logits)
    probabilities, labels = saved['probabilities'], saved['labels']
    assert probabilities.shape == (len(lines), 102)
    np.testing.assert_array_equal(labels,
                                  [int(line.split()[-1]) for line in lines])
    ranks = [int(np.sum(row > row[label])) for row, label in
             zip(probabilities, labels)]  # 0: the label is the top class
    top1 = np.mean([r < 1 for r in ranks])
    top5 = np.mean([r < 5 for r in ranks])
    assert re.search(r'%s\s+%s\s+%s' % (re.escape(prefix), re.escape(
        percent(top1)), re.escape(percent(top5))), out)
    # The flower names of class_names.txt in the confusions and predictions.
    with open(os.path.join(root, 'class_names.txt')) as f:
        names = [line.strip() for line in f]
    assert any(name in out for name in names)
    image = os.path.join(jpg, os.path.basename(lines[0].split()[0]))
    out, err, status = run_main(predict.main, [image, '--checkpoint', prefix,
                                               '--class_names', os.path.join(
                                                   root, 'class_names.txt')])
    assert status == 0, err
    rows = parse_predictions(out)[image]
    assert len(rows) == 5 and all(name in names for _, name in rows)
    row = probabilities[0]
    assert [name for _, name in rows] == [names[k] for k in
                                          np.argsort(-row, kind='stable')[:5]]
