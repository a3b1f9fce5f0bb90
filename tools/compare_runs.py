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
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from training import read_history  # noqa: E402


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
    """A run folder's history rows, class count and a short name."""

    def __init__(self, folder, label=None):
        if os.path.isfile(folder):  # history.csv itself was given
            folder = os.path.dirname(folder)
        self.folder = folder
        self.history = read_history(os.path.join(folder, 'history.csv'))
        if not self.history:
            raise ValueError('no history.csv with any epoch in %s' % folder)
        config_file = os.path.join(folder, 'config.json')
        config = {}
        if os.path.isfile(config_file):
            with open(config_file) as f:
                config = json.load(f)
        self.num_classes = config.get('num_classes', 102)
        self.label = label or default_label(folder)

    def column(self, name):
        return [row[name] for row in self.history]

    def summary(self):
        """(best val acc, epoch of best, final val acc, minutes)."""
        best = max(self.history, key=lambda row: row['val_acc'])
        return (best['val_acc'], best['epoch'], self.history[-1]['val_acc'],
                sum(self.column('seconds')) / 60.0)


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
    """Validation accuracy and training loss per epoch, in two panels."""
    figure, (accuracy, loss) = plt.subplots(1, 2, figsize=(11, 4.2))
    for run in runs:
        epochs = run.column('epoch')
        line, = accuracy.plot(epochs, [100 * a for a in run.column('val_acc')],
                              marker='o', markersize=3, label=run.label)
        loss.plot(epochs, run.column('train_loss'), marker='o', markersize=3,
                  color=line.get_color(), label=run.label)
    for num_classes in sorted(set(run.num_classes for run in runs)):
        accuracy.axhline(100.0 / num_classes, color='gray', linestyle='--',
                         linewidth=1,
                         label='chance (1/%d)' % num_classes)
    accuracy.set(xlabel='epoch', ylabel='validation accuracy (%)',
                 title='Validation accuracy')
    accuracy.set_ylim(bottom=0)
    loss.set(xlabel='epoch', ylabel='training loss (cross-entropy)',
             title='Training loss')
    for axes in (accuracy, loss):
        axes.grid(alpha=0.3)
        axes.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def main(argv=None):
    args = parse_args(argv)
    labels = args.labels.split(',') if args.labels else [None] * len(args.runs)
    if len(labels) != len(args.runs):
        sys.exit('compare_runs.py: %d labels for %d runs'
                 % (len(labels), len(args.runs)))
    try:
        runs = [Run(folder, label) for folder, label in zip(args.runs, labels)]
    except (OSError, ValueError) as error:
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
