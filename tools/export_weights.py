"""Write a run's weights as a bvlc_alexnet.npy file, to start other runs from.

    python tools/export_weights.py runs/scratch/checkpoints my_alexnet.npy
    python tools/export_weights.py runs/scratch/checkpoints my_alexnet.npy \\
        --checkpoint epoch-10

The course's advice is to reuse the lower layers of a network trained on a
similar task; that task may be your own earlier run. This tool takes the
run's best checkpoint (or the one --checkpoint names) and writes its
weights in the layout of the ImageNet file, bvlc_alexnet.npy:

    {'conv1': [weights, biases], ..., 'fc8': [weights, biases]}

float32, convolutions (height, width, in, out), fully connected (in, out),
saved with np.save. Only the weights and biases: a training checkpoint also
holds the momentum of every weight, which a new run starts afresh. fc8 is
written too, with the classes of the run; keep 'fc8' in skip_layer when the
new task has other classes. Then, in finetune.py:

    weights_path = 'my_alexnet.npy'
    skip_layer = ['fc8']

From Python: model_files.export_weights(checkpoint_prefix, out_path).
"""
import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import inference  # noqa: E402
from model_files import ExportWeightsError, export_weights  # noqa: E402,F401


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('run', metavar='RUN_OR_CHECKPOINT',
                        help='a run folder, or a checkpoint prefix')
    parser.add_argument('out', metavar='OUT.npy')
    parser.add_argument('--checkpoint', metavar='NAME',
                        help='which checkpoint of the run folder: best '
                             '(the default), epoch-N, interrupted-N, or '
                             'latest (the newest of these)')
    parser.add_argument('--force', action='store_true',
                        help='replace OUT.npy if it exists')
    return parser.parse_args(argv)


#: The names --checkpoint accepts.
CHECKPOINT_NAME = re.compile(r'^(best|latest|(epoch|interrupted)-[0-9]+)$')


def chosen_checkpoint(run, name):
    """The checkpoint prefix that RUN and --checkpoint NAME stand for."""
    if name is None:
        return inference.find_checkpoint(run)
    if not CHECKPOINT_NAME.match(name):
        raise ExportWeightsError('--checkpoint %r: give best, latest, '
                                 'epoch-N or interrupted-N' % name)
    if not os.path.isdir(run):
        raise ExportWeightsError('--checkpoint %s needs a run folder, and %s '
                                 'is not one' % (name, run))
    found = (inference.latest_checkpoint(run) if name == 'latest' else
             os.path.join(run, name))
    if found is None or not os.path.isfile(found + '.index'):
        raise ExportWeightsError('%s holds no %s checkpoint' % (run, name))
    return found


def main(argv=None):
    args = parse_args(argv)
    try:
        prefix = chosen_checkpoint(args.run, args.checkpoint)
        layers = export_weights(prefix, args.out, overwrite=args.force)
    except (ExportWeightsError,) + inference.INPUT_ERRORS as error:
        sys.exit('export_weights.py: %s' % error)
    except OSError as error:
        sys.exit('export_weights.py: cannot write %s: %s' % (args.out, error))
    print('Wrote the weights of %s to %s (%.0f MB): %s; fc8 has %d classes.'
          % (prefix, args.out, os.path.getsize(args.out) / 1e6,
             ', '.join(sorted(layers)), layers['fc8'][1].shape[0]))


if __name__ == '__main__':
    main()
