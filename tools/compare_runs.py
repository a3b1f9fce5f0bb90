"""Compare training runs: a table, and their curves in one picture.

    python tools/compare_runs.py runs/finetune/checkpoints \\
        runs/scratch/checkpoints --out finetune_vs_scratch.png

Reads the history.csv (and config.json) that finetune.py writes into each
run folder. Prints, per run, the best validation accuracy and its epoch,
the final one, and the training time; with --out, draws validation accuracy
(left) and training loss (right) per epoch, with the accuracy of random
guessing (1 / number of classes) as a dashed line.

The picture needs matplotlib (pip install matplotlib), which nothing else in
the kit uses; the table does not.
"""
import argparse
import json
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from run_folder import RunFolderError  # noqa: E402
from runfiles import read_history  # noqa: E402

#: The columns of history.csv that the table and the picture use.
NEEDED_COLUMNS = ('epoch', 'train_loss', 'val_acc', 'seconds')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('runs', nargs='+', metavar='RUN',
                        help='run folders (checkpoint_path of finetune.py) '
                             'holding history.csv')
    parser.add_argument('--out', metavar='PLOT.png',
                        help='draw the curves into this image file')
    parser.add_argument('--labels', default=None,
                        help='comma-separated names of the runs in the legend '
                             'and table (default: from the folder names)')
    parser.add_argument('--title', default=None, help='title of the picture')
    return parser.parse_args(argv)


class Run(object):
    """A run folder's history rows, class count and a short name.

    Raises RunFolderError, naming the file, when history.csv is missing,
    empty or lacks a column, or config.json is damaged."""

    def __init__(self, folder, label=None):
        if os.path.isfile(folder):  # history.csv itself was given
            folder = os.path.dirname(folder) or '.'
        self.folder = folder
        history_file = os.path.join(folder, 'history.csv')
        self.history = read_history(history_file)
        if not self.history:
            raise RunFolderError('no history.csv with any epoch in %s'
                                 % folder)
        missing = [name for name in NEEDED_COLUMNS
                   if name not in self.history[0]]
        if missing:
            raise RunFolderError(
                '%s has no column %s: is it a history.csv of finetune.py?'
                % (history_file, ', '.join(missing)))
        self.num_classes = read_num_classes(folder)
        self.label = label or default_label(folder)

    def column(self, name):
        return [row[name] for row in self.history]

    def summary(self):
        """(best val acc, epoch of best, final val acc, minutes)."""
        best = max(self.history, key=lambda row: row['val_acc'])
        return (best['val_acc'], best['epoch'], self.history[-1]['val_acc'],
                sum(self.column('seconds')) / 60.0)


def read_num_classes(folder, default=102):
    """num_classes from the run's config.json; `default` without the file
    (history.csv alone is enough to compare runs). Raises RunFolderError,
    naming the file, if it is damaged or num_classes is not a count."""
    config_file = os.path.join(folder, 'config.json')
    if not os.path.exists(config_file):
        return default
    try:
        with open(config_file, encoding='utf-8') as f:
            config = json.load(f)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise RunFolderError('%s is damaged (%s): not the config.json that '
                             'finetune.py writes. Move it out of the folder '
                             'to compare the run without it.'
                             % (config_file, str(error)[:200]))
    number = config.get('num_classes', default) if isinstance(
        config, dict) else None
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise RunFolderError('%s: num_classes is %r, not a positive whole '
                             'number. Correct it, or move the file out of '
                             'the folder.' % (config_file, number))
    return number


def default_label(folder):
    """runs/finetune/checkpoints -> 'finetune'; other folders: their name."""
    parts = os.path.normpath(os.path.abspath(folder)).split(os.sep)
    if parts[-1] == 'checkpoints' and len(parts) > 1:
        return parts[-2]
    return parts[-1]


def print_table(runs):
    width = max([len(run.label) for run in runs] + [3])
    print('%-*s  %12s  %13s  %13s  %7s' % (
        width, 'run', 'best val acc', 'epoch of best', 'final val acc',
        'minutes'))
    for run in runs:
        best, epoch, final, minutes = run.summary()
        print('%-*s  %11.2f%%  %13d  %12.2f%%  %7.1f' % (
            width, run.label, 100 * best, epoch, 100 * final, minutes))


def import_pyplot():
    """matplotlib.pyplot, drawing into files (no window, no display needed:
    the Agg backend); None if matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def plot(plt, runs, out, title=None):
    """Draw the curves (see `draw`) into the image file `out`."""
    figure = draw(plt, runs, title)
    figure.savefig(out, dpi=100)
    plt.close(figure)


def draw(plt, runs, title=None):
    """Validation accuracy and training loss per epoch, in two panels.

    Returns the matplotlib Figure. A run of one epoch is one point, and a
    flat curve a level line; left to themselves, matplotlib's axes would
    then span a hair's width (0.96 to 1.04 epochs, a loss axis labelled
    "+6.579" with ticks of 0.0001). So the axes are set here: whole epochs,
    plain loss values, and ranges that give the data room.
    """
    figure, (accuracy, loss) = plt.subplots(1, 2, figsize=(11, 4.2))
    for run in runs:
        epochs = run.column('epoch')
        # Markers large enough to see, a single point above all.
        style = dict(marker='o', markersize=7 if len(epochs) == 1 else 3)
        line, = accuracy.plot(epochs, [100 * a for a in run.column('val_acc')],
                              label=run.label, **style)
        loss.plot(epochs, run.column('train_loss'), color=line.get_color(),
                  label=run.label, **style)
    classes = sorted(set(run.num_classes for run in runs))
    for num_classes in classes:
        accuracy.axhline(100.0 / num_classes, color='gray', linestyle='--',
                         linewidth=1, label='chance (1/%d)' % num_classes)
    accuracy.set(xlabel='epoch', ylabel='validation accuracy (%)',
                 title='Validation accuracy')
    accuracy.set_ylim(0, accuracy_top([100 * a for run in runs
                                       for a in run.column('val_acc')]
                                      + [100.0 / n for n in classes]))
    loss.set(xlabel='epoch', ylabel='training loss (cross-entropy)',
             title='Training loss')
    limits = loss_limits([value for run in runs
                          for value in run.column('train_loss')])
    if limits:
        loss.set_ylim(*limits)
    loss.ticklabel_format(axis='y', useOffset=False, style='plain')
    epochs = [epoch for run in runs for epoch in run.column('epoch')]
    for axes in (accuracy, loss):
        axes.set_xlim(*epoch_limits(epochs))
        axes.xaxis.set_major_locator(integer_locator())
        axes.grid(alpha=0.3)
        axes.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def integer_locator():
    """Ticks at whole numbers only: epochs have no halves. (min_n_ticks=1:
    by default the locator gives up on whole numbers when fewer than two
    fit, as for one epoch, and ticks at 0.5, 0.6, ...)"""
    from matplotlib.ticker import MaxNLocator
    return MaxNLocator(integer=True, min_n_ticks=1)


def epoch_limits(epochs):
    """The epoch axis: half an epoch of room on each side of a short run
    (epoch 1 alone: 0.5 to 1.5), the usual 3% margin on a long one."""
    first, last = min(epochs), max(epochs)
    room = max(0.5, 0.03 * (last - first))
    return first - room, last + room


def accuracy_top(percentages):
    """The top of the accuracy axis: the data (and the chance line) with a
    tenth to spare, rounded up to 10%; at least 10%, at most 100%."""
    highest = max([p for p in percentages if math.isfinite(p)] or [0.0])
    return min(100.0, max(10.0, 10.0 * math.ceil(highest * 1.1 / 10.0)))


def loss_limits(losses):
    """The loss axis: the data with 5% room above and below; a flat curve
    (one epoch, or no change) gets 10% of its value (at least 0.1) on each
    side. Never below zero, as a cross-entropy is not. None if no loss is
    a number (a run that diverged at once): matplotlib's own choice then."""
    losses = [value for value in losses if math.isfinite(value)]
    if not losses:
        return None
    low, high = min(losses), max(losses)
    room = 0.05 * (high - low)
    if room < 0.01 * max(abs(high), 1.0):
        room = max(0.1 * abs(high), 0.1)
    return max(0.0, low - room), high + room


def main(argv=None):
    args = parse_args(argv)
    labels = args.labels.split(',') if args.labels else [None] * len(args.runs)
    if len(labels) != len(args.runs):
        sys.exit('compare_runs.py: %d labels for %d runs'
                 % (len(labels), len(args.runs)))
    try:
        runs = [Run(folder, label) for folder, label in zip(args.runs, labels)]
    except (OSError, RunFolderError) as error:
        sys.exit('compare_runs.py: %s' % error)
    print_table(runs)
    if args.out:
        plt = import_pyplot()
        if plt is None:
            sys.exit('compare_runs.py: drawing %s needs matplotlib, which is '
                     'not installed: pip install matplotlib (the table above '
                     'needs nothing)' % args.out)
        plot(plt, runs, args.out, args.title)
        print('Wrote %s' % args.out)


if __name__ == '__main__':
    main()
