"""Evaluate trained AlexNets on a list of images: the final number.

    python evaluate.py runs/finetune/checkpoints   # best checkpoint, test set
    python evaluate.py runs/finetune/checkpoints --ten_crop  # Caffe's 10 views
    python evaluate.py runs/finetune/checkpoints/epoch-30 --list my_list.txt
    python evaluate.py runs/a/checkpoints runs/b/checkpoints  # an ensemble

On testfile.txt (6149 images never used in training or validation) this
gives the final result of the exercise.

Reports
  - top-1 accuracy: the most likely class is the right one;
  - top-5 accuracy: the right class is among the five most likely;
  - mean per-class accuracy: the top-1 accuracy of each class, averaged, so
    that every class counts the same however many test images it has;
  - the five pairs of classes most often confused.

Several checkpoints make an ensemble: the softmax outputs of the networks
are averaged, image by image, and the average decides. Each member's
accuracy is shown next to the ensemble's.
"""
import argparse
import csv
import os
import sys

import numpy as np

import inference
from datagenerator import LOADERS


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoints', nargs='+', metavar='RUN_OR_CHECKPOINT',
                        help='a run folder (its best checkpoint is used) or a '
                             'checkpoint prefix; several make an ensemble')
    parser.add_argument('--list', default='testfile.txt',
                        help='the images to evaluate, "<path> <label>" per '
                             'line (default: testfile.txt)')
    parser.add_argument('--replacementpath', default=None,
                        help="the folder of the images (default: the run's "
                             'config.json, else %s)'
                             % inference.DEFAULT_IMAGES)
    parser.add_argument('--loader', choices=LOADERS, default='opencv',
                        help='the library that decodes the images')
    parser.add_argument('--batch_size', type=inference.positive_int,
                        default=64,
                        help='views per forward pass (default: 64)')
    parser.add_argument('--ten_crop', action='store_true',
                        help="average over Caffe's ten views (4 corners and "
                             'the centre, and their mirrors) instead of the '
                             'centre crop alone')
    parser.add_argument('--class_names', default=inference.CLASS_NAMES_FILE,
                        help='one class name per line, label 0 first')
    parser.add_argument('--confusion_csv', metavar='FILE',
                        help='write the confusion matrix (rows: true class, '
                             'columns: predicted class) as CSV')
    parser.add_argument('--save_logits', metavar='FILE.npz',
                        help='save the softmax outputs (ensemble and members) '
                             'and the labels')
    args = parser.parse_args(argv)
    for flag in ('confusion_csv', 'save_logits'):
        folder = os.path.dirname(getattr(args, flag) or '') or '.'
        if not os.path.isdir(folder):  # say so now, not after evaluating
            parser.error('--%s: the folder %s does not exist' % (flag, folder))
    return args


# ---------------------------------------------------------------------------
# The measures, from softmax outputs [images, classes] and labels [images]
# ---------------------------------------------------------------------------


def top_k_accuracy(probabilities, labels, k):
    """Fraction of images whose true class is among the k most likely."""
    top_k = np.argsort(-probabilities, axis=1, kind='stable')[:, :k]
    return float(np.mean(np.any(top_k == labels[:, None], axis=1)))


def confusion_matrix(labels, predictions, num_classes):
    """counts[t, p]: how many images of class t were predicted as class p."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (labels, predictions), 1)
    return counts


def per_class_accuracy(confusion):
    """The top-1 accuracy within each class; NaN for classes without images."""
    images = confusion.sum(axis=1)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.diag(confusion) / images


def most_confused(confusion, count=5):
    """The `count` largest mistakes as (true class, predicted class, images),
    largest first; pairs never confused are left out."""
    mistakes = confusion.copy()
    np.fill_diagonal(mistakes, 0)
    order = np.argsort(-mistakes, axis=None, kind='stable')[:count]
    pairs = [np.unravel_index(index, mistakes.shape) for index in order]
    return [(int(t), int(p), int(mistakes[t, p])) for t, p in pairs
            if mistakes[t, p] > 0]


def measures(probabilities, labels):
    """{'top1', 'top5', 'per_class', 'confusion'} of one set of outputs."""
    num_classes = probabilities.shape[1]
    confusion = confusion_matrix(labels, probabilities.argmax(axis=1),
                                 num_classes)
    return dict(top1=top_k_accuracy(probabilities, labels, 1),
                top5=top_k_accuracy(probabilities, labels, 5),
                per_class=float(np.nanmean(per_class_accuracy(confusion))),
                confusion=confusion)


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------


def print_table(rows):
    """rows: (name, measures); one line each, the numbers in columns."""
    width = max(len(name) for name, _ in rows)
    print('%-*s  %7s  %7s  %9s' % (width, '', 'top-1', 'top-5', 'per-class'))
    for name, m in rows:
        print('%-*s  %6.2f%%  %6.2f%%  %8.2f%%' % (
            width, name, 100 * m['top1'], 100 * m['top5'],
            100 * m['per_class']))


def print_confusions(confusion, names, count=5):
    pairs = most_confused(confusion, count)
    if not pairs:
        print('No image was misclassified.')
        return
    print('The %d most confused pairs (true class -> predicted as: images):'
          % len(pairs))
    for true, predicted, images in pairs:
        print('  %s (%d) -> %s (%d): %d of %d' % (
            names[true], true, names[predicted], predicted, images,
            confusion[true].sum()))


def write_confusion_csv(confusion, names, path):
    """Rows are the true classes, columns the predictions, as names."""
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['true \\ predicted'] + names)
        for name, row in zip(names, confusion):
            writer.writerow([name] + row.tolist())


# ---------------------------------------------------------------------------
# The script
# ---------------------------------------------------------------------------


def open_models(sources):
    """A Model per checkpoint; all must have the same number of classes."""
    models = []
    try:
        for source in sources:
            models.append(inference.Model.from_checkpoint(source))
        counts = sorted(set(model.num_classes for model in models))
        if len(counts) > 1:
            raise inference.CheckpointError(
                'the checkpoints have different numbers of classes (%s): an '
                'ensemble needs models of the same classes'
                % ', '.join(map(str, counts)))
    except Exception:
        close_all(models)
        raise
    return models


def close_all(models):
    for model in models:
        model.close()


def evaluate(args):
    # The files first (a second), then the models (seconds each).
    replacementpath = inference.images_folder(args.replacementpath,
                                              args.checkpoints[0])
    paths, labels = inference.read_image_list(args.list, replacementpath)
    models = open_models(args.checkpoints)
    num_classes = models[0].num_classes
    try:
        inference.check_labels(args.list, labels, num_classes)
        names = inference.read_class_names(args.class_names, num_classes)
        print('Evaluating on the %d images of %s (%s), %d classes: chance is '
              '%.2f%% top-1.' % (len(paths), args.list, 'ten views' if
                                 args.ten_crop else 'centre crop',
                                 num_classes, 100.0 / num_classes))
        members = inference.predict_list(models, paths, args.loader,
                                         args.batch_size, args.ten_crop)
    finally:
        close_all(models)
    ensemble = np.mean(members, axis=0)  # average the softmax outputs

    rows = [(model.source, measures(out, labels))
            for model, out in zip(models, members)]
    if len(models) > 1:
        rows.append(('ensemble of %d' % len(models),
                     measures(ensemble, labels)))
    print_table(rows)
    confusion = rows[-1][1]['confusion']
    print_confusions(confusion, names)
    if args.confusion_csv:
        write_confusion_csv(confusion, names, args.confusion_csv)
        print('Confusion matrix written to %s' % args.confusion_csv)
    if args.save_logits:
        np.savez(args.save_logits, probabilities=ensemble, labels=labels,
                 member_probabilities=np.stack(members), paths=paths,
                 checkpoints=[model.source for model in models])
        print('Softmax outputs written to %s' % args.save_logits)
    return rows


def main(argv=None):
    args = parse_args(argv)
    try:
        evaluate(args)
    except inference.INPUT_ERRORS as error:
        sys.exit('evaluate.py: %s' % error)
    except OSError as error:  # writing --confusion_csv or --save_logits
        sys.exit('evaluate.py: %s' % error)


if __name__ == '__main__':
    main()
