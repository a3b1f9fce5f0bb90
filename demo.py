"""The lesson of the exercise, offline: loaded weights beat scratch.

    python finetune.py --demo          # about 4 minutes the first time

The exercise shows one thing: a network that starts from weights learned on
another task beats the same network trained from scratch on a small data
set. The demo plays it on generated pictures, without any download:

1. Pretraining, once. AlexNet learns a *source* task from scratch: six
   kinds of coloured shapes (a red disc, a green square, ...). Its best
   weights are saved as runs/demo/pretrained.npy, in the layout of
   bvlc_alexnet.npy (fc8 of the six source classes included). Later demos
   reuse the file; delete it to pretrain again.
2. The exercise, twice, on a small *target* task whose classes the source
   never showed (new shapes): fine-tuning from pretrained.npy through the
   student's own `model.load_initial_weights(sess)` line (fc8 skipped, and
   learning 10x faster), then the same settings from scratch. Both runs go
   to runs/demo/finetune/checkpoints and runs/demo/scratch/checkpoints, as
   the real exercise writes them.
3. The answer: both best validation accuracies beside the chance level,
   and runs/demo/compare.png (tools/compare_runs.py, with matplotlib).

Every stage runs the student's own script (finetune.py or finetune_pil.py)
as a separate process with command-line flags, so what the demo shows is
what the script does. Flags given with --demo (--num_epochs, --batch_size,
--seed, ...) go to the two runs of the exercise and win over the demo's.

Also here: the picture generators, used by the tests
(`make_demo_dataset`) and by tools/demo_data.py, which saves a set to look
at.
"""
import csv
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import time

import numpy as np

# ---------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------

#: Object colours, BGR as OpenCV draws them.
COLOURS = {'red': (40, 40, 220), 'green': (40, 200, 40),
           'blue': (220, 60, 30), 'yellow': (30, 220, 230),
           'magenta': (200, 40, 200), 'cyan': (220, 220, 40)}

#: The source task: what pretraining learns. The first four are also the
#: small set of make_demo_dataset (the tests' data).
SOURCE_CLASSES = [('red', 'disc'), ('green', 'square'), ('blue', 'stripes'),
                  ('yellow', 'triangle'), ('magenta', 'ring'),
                  ('cyan', 'cross')]

#: The target task: the exercise's small data set. Shapes the source never
#: showed; what it can reuse are its detectors of edges, corners, colours.
TARGET_CLASSES = [('red', 'star'), ('green', 'diamond'), ('blue', 'frame'),
                  ('yellow', 'checks')]

PICTURE_SIZE = 256  # the loaders resize every image to 256x256 anyway


def class_name(colour_and_shape):
    return '%s %s' % colour_and_shape


def draw_shape(image, shape, centre, radius, colour):
    """Draw one filled shape of about `radius` pixels around `centre`."""
    import cv2
    x, y, r = centre[0], centre[1], radius
    thick = max(4, r // 4)
    if shape == 'disc':
        cv2.circle(image, (x, y), r, colour, -1)
    elif shape == 'ring':
        cv2.circle(image, (x, y), r - thick // 2, colour, thick)
    elif shape == 'square':
        cv2.rectangle(image, (x - r, y - r), (x + r, y + r), colour, -1)
    elif shape == 'frame':
        cv2.rectangle(image, (x - r + thick // 2, y - r + thick // 2),
                      (x + r - thick // 2, y + r - thick // 2), colour, thick)
    elif shape == 'stripes':  # vertical bars
        for left in range(x - r, x + r, 16):
            cv2.rectangle(image, (left, y - r), (left + 7, y + r), colour, -1)
    elif shape == 'checks':  # a checkerboard
        cell = max(8, r // 3)
        for i, top in enumerate(range(y - r, y + r, cell)):
            for j, left in enumerate(range(x - r, x + r, cell)):
                if (i + j) % 2 == 0:
                    cv2.rectangle(image, (left, top), (left + cell - 1,
                                                       top + cell - 1),
                                  colour, -1)
    elif shape == 'cross':
        cv2.rectangle(image, (x - r, y - thick), (x + r, y + thick), colour, -1)
        cv2.rectangle(image, (x - thick, y - r), (x + thick, y + r), colour, -1)
    else:
        cv2.fillPoly(image, [_polygon(shape, x, y, r)], colour)


def _polygon(shape, x, y, r):
    """The corners of a triangle, diamond or five-pointed star."""
    if shape == 'triangle':
        corners = [[x, y - r], [x - r, y + r], [x + r, y + r]]
    elif shape == 'diamond':
        corners = [[x, y - r], [x - r, y], [x, y + r], [x + r, y]]
    elif shape == 'star':  # points at radius r, inner corners at 0.45 r
        angles = np.arange(10) * np.pi / 5 - np.pi / 2
        radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        corners = np.stack([x + radii * np.cos(angles),
                            y + radii * np.sin(angles)], axis=1)
    else:
        raise ValueError('unknown shape %r' % shape)
    return np.round(np.array(corners)).astype(np.int32)


def draw_picture(colour, shape, rng, size=PICTURE_SIZE):
    """One uint8 BGR picture: a shape of the class colour (give or take 25)
    at a random place and size, on noisy ground of a random colour."""
    ground = rng.integers(0, 256, 3)
    image = np.clip(ground + rng.normal(0, 25, (size, size, 3)),
                    0, 255).astype(np.uint8)
    jitter = rng.integers(-25, 26, 3)
    bgr = tuple(int(c) for c in np.clip(np.add(COLOURS[colour], jitter),
                                        0, 255))
    radius = int(rng.integers(40, 90))
    centre = (int(rng.integers(radius, size - radius)),
              int(rng.integers(radius, size - radius)))
    draw_shape(image, shape, centre, radius, bgr)
    return image


def make_image_set(folder, classes, train_per_class, val_per_class, seed=0):
    """Write the pictures of `classes` and train.txt, val.txt into `folder`.

    `classes` is a list of (colour, shape); label i is classes[i]. Returns
    the paths of the two lists, whose lines name the images relative to the
    list (`images/train_0_000.jpg 0`), so the folder may be moved. The same
    seed gives the same pictures.
    """
    import cv2
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, 'images'), exist_ok=True)
    lists = []
    for split, per_class in (('train', train_per_class),
                             ('val', val_per_class)):
        lines = []
        for label, (colour, shape) in enumerate(classes):
            for i in range(per_class):
                name = 'images/%s_%d_%03d.jpg' % (split, label, i)
                cv2.imwrite(os.path.join(folder, name),
                            draw_picture(colour, shape, rng))
                lines.append('%s %d\n' % (name, label))
        path = os.path.join(folder, split + '.txt')
        with open(path, 'w') as f:
            f.writelines(lines)
        lists.append(path)
    return tuple(lists)


def make_demo_dataset(folder, train_per_class=30, val_per_class=10, seed=0):
    """A small four-class set (the first four source classes) that AlexNet
    learns from scratch in a few epochs; returns (train list, val list)."""
    return make_image_set(folder, SOURCE_CLASSES[:4], train_per_class,
                          val_per_class, seed)


# ---------------------------------------------------------------------------
# The lesson
# ---------------------------------------------------------------------------

#: The sizes of the lesson. Tests pass a smaller plan to run_lesson.
PLAN = dict(
    source_train_per_class=100, source_val_per_class=20, pretrain_epochs=3,
    pretrain_batch_size=16, pretrain_seed=1,
    target_train_per_class=20, target_val_per_class=15, data_seed=0)

#: The settings of the two runs of the exercise; flags given with --demo
#: win. The learning rate, momentum, fc8's 10x and the rest stay the
#: exercise's own.
EXERCISE_FLAGS = dict(num_epochs=5, batch_size=16, display_step=5,
                      keep_checkpoints=1)

#: Flags that would take the demo somewhere else: refused with --demo.
FIXED_BY_DEMO = ('train_file', 'val_file', 'replacementpath', 'num_classes',
                 'weights_path', 'checkpoint_path', 'filewriter_path',
                 'scratch', 'resume')


class DemoError(Exception):
    """The lesson cannot go on; the message says why and what to do."""


def run_lesson(script, argv, folder=os.path.join('runs', 'demo'), plan=None):
    """Play the lesson with `script` (the path of finetune.py or
    finetune_pil.py) and the command-line flags `argv` (those of the
    --demo command: --demo itself is ignored, the others go to the two runs
    of the exercise). Returns None once done, or the message of what went
    wrong: `sys.exit(demo.run_lesson(__file__, sys.argv[1:]))`.
    """
    plan = dict(PLAN, **(plan or {}))
    try:
        user_flags = _user_flags(argv)
        print(_settings_line(user_flags))
        seconds = {}
        pretrained = os.path.join(folder, 'pretrained.npy')
        if os.path.isfile(pretrained):
            print('Reusing %s (delete it to pretrain again).' % pretrained)
        else:
            seconds['pretraining'] = pretrain(script, folder, plan)
        train_list, val_list = make_image_set(
            os.path.join(folder, 'target'), TARGET_CLASSES,
            plan['target_train_per_class'], plan['target_val_per_class'],
            plan['data_seed'])
        common = _flags(dict(EXERCISE_FLAGS, train_file=train_list,
                             val_file=val_list, replacementpath='',
                             num_classes=len(TARGET_CLASSES))) + user_flags
        runs = {}
        for mode, extra in (('finetune', ['--weights_path', pretrained]),
                            ('scratch', ['--scratch'])):
            runs[mode] = os.path.join(folder, mode, 'checkpoints')
            seconds[mode] = run_script(
                script, common + extra + _run_folder_flags(folder, mode),
                _stage_title(mode, pretrained))
        print(summary(runs, seconds))
        draw_comparison(runs, os.path.join(folder, 'compare.png'))
    except DemoError as error:
        return str(error)
    return None


def _user_flags(argv):
    """The flags given with --demo, checked: those that would move the
    lesson's data or runs elsewhere are refused."""
    flags = [word for word in argv if word != '--demo']
    names = [word[2:].split('=')[0] for word in flags if word.startswith('--')]
    refused = [name for name in names if name in FIXED_BY_DEMO]
    if refused:
        raise DemoError(
            '--demo sets %s itself: run the demo without %s, or run the '
            'script without --demo to train on your own lists.'
            % (', '.join(FIXED_BY_DEMO), ', '.join('--' + n for n in refused)))
    return flags


def _settings_line(user_flags):
    shown = ', '.join('%s %s' % item for item in sorted(EXERCISE_FLAGS.items()))
    return ('Demo: %d generated target classes (%s); the exercise runs with '
            '%s%s.' % (len(TARGET_CLASSES),
                       ', '.join(map(class_name, TARGET_CLASSES)), shown,
                       '; yours: ' + ' '.join(user_flags) if user_flags
                       else ''))


def _flags(settings):
    """['--name', 'value', ...] for a dict of settings."""
    words = []
    for name, value in sorted(settings.items()):
        words += ['--' + name, str(value)]
    return words


def _run_folder_flags(folder, mode):
    """checkpoint_path and filewriter_path of one stage, emptied first:
    each demo replaces the runs of the previous one."""
    run_folder = os.path.join(folder, mode)
    if os.path.isdir(run_folder):
        shutil.rmtree(run_folder)
    return ['--checkpoint_path', os.path.join(run_folder, 'checkpoints'),
            '--filewriter_path', os.path.join(run_folder, 'tensorboard')]


def _stage_title(mode, pretrained):
    if mode == 'finetune':
        return ('Fine-tuning from %s (fc8 skipped: it starts fresh, at 10x '
                'the rate)' % pretrained)
    return 'The same settings from scratch (--scratch)'


def run_script(script, flags, title):
    """Run the training script with `flags`; returns its wall time."""
    print('\n== Demo: %s ==\n%s' % (title, ' '.join(shlex.quote(word) for word in
        [os.path.basename(sys.executable), script] + flags)), flush=True)
    start = time.time()
    try:
        status = subprocess.call([sys.executable, script] + flags)
    except KeyboardInterrupt:
        raise DemoError('\nDemo stopped (Ctrl-C). Run it again to start over.')
    if status != 0:
        raise DemoError('Demo stopped: %s ended with status %d (its message '
                        'is above).' % (title, status))
    return time.time() - start


def pretrain(script, folder, plan):
    """Train the source task from scratch, keep its best weights as
    `folder`/pretrained.npy; returns the seconds it took."""
    train_list, val_list = make_image_set(
        os.path.join(folder, 'source'), SOURCE_CLASSES,
        plan['source_train_per_class'], plan['source_val_per_class'],
        plan['data_seed'])
    flags = _flags(dict(train_file=train_list, val_file=val_list,
                        replacementpath='', num_classes=len(SOURCE_CLASSES),
                        num_epochs=plan['pretrain_epochs'],
                        batch_size=plan['pretrain_batch_size'],
                        seed=plan['pretrain_seed'],
                        display_step=10, keep_checkpoints=1))
    seconds = run_script(
        script, ['--scratch'] + flags + _run_folder_flags(folder, 'pretrain'),
        'pretraining, once: %d source classes (%s) from scratch'
        % (len(SOURCE_CLASSES), ', '.join(map(class_name, SOURCE_CLASSES))))
    checkpoints = os.path.join(folder, 'pretrain', 'checkpoints')
    export_weights(os.path.join(checkpoints, 'best'),
                   os.path.join(folder, 'pretrained.npy'))
    return seconds


def export_weights(checkpoint, out_path):
    """Write the weights of a checkpoint (`.../best`) in the layout of
    bvlc_alexnet.npy: {'conv1': [weights, biases], ..., 'fc8': [...]}.

    Read by name with TensorFlow's checkpoint reader: no graph is built,
    and the momentum the checkpoint may also hold is left out.
    """
    from alexnet import LAYERS, tf
    import weights as weights_io
    try:
        reader = tf.train.NewCheckpointReader(checkpoint)
        layers = {layer: {kind: reader.get_tensor('%s/%s' % (layer, kind))
                          for kind in ('weights', 'biases')}
                  for layer in LAYERS}
    except (tf.errors.OpError, ValueError) as error:
        raise DemoError('Cannot read the pretrained weights from %s: %s'
                        % (checkpoint, getattr(error, 'message', error)))
    weights_io.save_toronto_npy(layers, out_path)


def read_val_accuracies(run_folder):
    """The validation accuracies of a run's history.csv, epoch by epoch."""
    with open(os.path.join(run_folder, 'history.csv'), newline='') as f:
        return [float(row['val_acc']) for row in csv.DictReader(f)]


def summary(runs, seconds):
    """The lesson's answer: best and final accuracy of each run, chance."""
    chance = 100.0 / len(TARGET_CLASSES)
    lines = ['\nThe lesson (validation accuracy on %d target classes; '
             'guessing scores %.1f%%):' % (len(TARGET_CLASSES), chance)]
    for mode, label in (('finetune', 'fine-tuned from the pretrained weights'),
                        ('scratch', 'trained from scratch')):
        accuracies = read_val_accuracies(runs[mode])
        best = max(accuracies)
        lines.append('  %-40s best %5.1f%% (epoch %d), last %5.1f%%, %4.0f s'
                     % (label, 100 * best, accuracies.index(best) + 1,
                        100 * accuracies[-1], seconds[mode]))
    if 'pretraining' in seconds:
        lines.append('  %-40s %4.0f s, once' % ('pretraining',
                                                seconds['pretraining']))
    lines.append('  total %.1f min' % (sum(seconds.values()) / 60))
    return '\n'.join(lines)


def draw_comparison(runs, picture):
    """runs/demo/compare.png with tools/compare_runs.py, if matplotlib is
    installed (the table is printed either way)."""
    tool = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'tools',
                        'compare_runs.py')
    command = [sys.executable, tool, runs['finetune'], runs['scratch'],
               '--labels', 'fine-tuned,from scratch']
    if importlib.util.find_spec('matplotlib') is not None:
        command += ['--out', picture]
    else:
        print('(pip install matplotlib to draw the curves into %s)' % picture)
    subprocess.call(command)
