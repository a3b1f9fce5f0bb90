"""The lesson of the exercise, offline: loaded weights beat scratch.

    python finetune.py --demo            # or: python finetune_pil.py --demo

A network that starts from weights learned on another task beats the same
network trained from scratch on a small data set. The demo shows it on
generated pictures, without any download:

1. Pretraining, once: AlexNet learns a *source* task from scratch (six
   coloured shapes: a red disc, a green square, ...). Its best weights
   become runs/demo/pretrained.npy, in the layout of bvlc_alexnet.npy, fc8
   of the six source classes included. Later demos reuse the file; delete
   it to pretrain again.
2. The exercise, twice, on a small *target* task of shapes the source never
   showed: fine-tuning from pretrained.npy through the script's own
   `model.load_initial_weights(sess)` line (fc8 skipped: it starts afresh,
   at 10x the rate), then the same settings from scratch, into
   runs/demo/finetune/checkpoints and runs/demo/scratch/checkpoints.
3. The answer: both accuracies beside the chance level, the time of each
   stage, and runs/demo/compare.png (tools/compare_runs.py, if matplotlib
   is installed).

Each stage runs the student's script as a process of its own, configured by
flags only, so the demo shows what the script does. Flags given with --demo
(--num_epochs, --batch_size, --seed, ...) go to the two runs of the exercise
and win over the demo's. The pictures are drawn by demo_pictures.py.
"""
import csv
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import time

from demo_pictures import (SOURCE_CLASSES, TARGET_CLASSES, class_name,
                           make_image_set)

#: The sizes of the lesson (the tests pass a smaller plan). The pretraining
#: is the demo's own stage, with its own settings.
PLAN = dict(source_train_per_class=100, source_val_per_class=10,
            pretrain_epochs=3, pretrain_batch_size=16, pretrain_seed=1,
            target_train_per_class=20, target_val_per_class=10, data_seed=0)

#: What the demo sets for the two runs of the exercise (flags given with
#: --demo win). The rest, learning rate and fc8's 10x included, is the
#: script's own.
EXERCISE_FLAGS = dict(num_epochs=4, batch_size=16, display_step=5,
                      keep_checkpoints=1)

#: Flags given with --demo that the pretraining takes too: they change its
#: speed, not its result.
SPEED_FLAGS = ('workers', 'image_cache')

#: Flags that would take the lesson's data or runs elsewhere: refused.
FIXED_BY_DEMO = ('train_file', 'val_file', 'replacementpath', 'num_classes',
                 'weights_path', 'checkpoint_path', 'filewriter_path',
                 'scratch', 'resume')


class DemoError(Exception):
    """The lesson cannot go on; the message says why and what to do."""


def run_lesson(script, argv, folder=os.path.join('runs', 'demo'), plan=None):
    """Play the lesson with the training script at the path `script`.

    `argv`: the flags of the --demo command line (--demo itself is
    ignored), for the two runs of the exercise. Returns None when done, or
    a message saying what went wrong, so that a script ends with
        sys.exit(demo.run_lesson(__file__, sys.argv[1:]))
    """
    plan = dict(PLAN, **(plan or {}))
    seconds = {'start': time.time()}
    try:
        yours = exercise_flags(argv)
        print(settings_line(yours))
        pretrained = os.path.join(folder, 'pretrained.npy')
        if os.path.exists(pretrained):
            check_pretrained(pretrained)
            print('Reusing %s (delete it to pretrain again).' % pretrained)
        else:
            pretrain(script, folder, plan, speed_flags(yours), seconds)
        lists = make_image_set(
            os.path.join(folder, 'target'), TARGET_CLASSES,
            plan['target_train_per_class'], plan['target_val_per_class'],
            plan['data_seed'])
        flags = as_flags(dict(EXERCISE_FLAGS, train_file=lists[0],
                              val_file=lists[1], replacementpath='',
                              num_classes=len(TARGET_CLASSES))) + yours
        run_script(script, flags + ['--weights_path', pretrained],
                   folder, 'finetune', seconds,
                   'fine-tuning from %s (fc8 skipped: it starts afresh)'
                   % pretrained)
        run_script(script, flags + ['--scratch'], folder, 'scratch', seconds,
                   'the same settings from scratch (--scratch)')
        draw_comparison(folder)
        print(summary(folder, seconds))
    except DemoError as error:
        return str(error)
    except OSError as error:  # a folder or file that cannot be written
        return 'Demo stopped: %s' % error
    return None


def flag_name(word):
    """'num_epochs' for '--num_epochs' or '--num_epochs=5'; else None."""
    return word[2:].split('=')[0] if word.startswith('--') else None


def exercise_flags(argv):
    """The flags given with --demo, less --demo. Those that would take the
    lesson elsewhere are refused, before anything runs."""
    flags = [word for word in argv if word != '--demo']
    refused = [flag_name(word) for word in flags
               if flag_name(word) in FIXED_BY_DEMO]
    if refused:
        raise DemoError(
            'The demo sets %s itself. Run it without %s, or without --demo '
            'to train on your own lists.'
            % (', '.join(FIXED_BY_DEMO), ', '.join('--' + n for n in refused)))
    return flags


def speed_flags(flags):
    """The words of `flags` that give a SPEED_FLAGS setting."""
    kept = []
    for i, word in enumerate(flags):
        if flag_name(word) in SPEED_FLAGS:
            kept += [word] if '=' in word else flags[i:i + 2]
    return kept


def settings_line(flags):
    """The demo's first line: the target task and what the demo set."""
    shown = ', '.join('%s %s' % item for item in sorted(EXERCISE_FLAGS.items()))
    return ('Demo: fine-tuning against scratch on %d generated classes (%s); '
            'the demo sets %s%s.'
            % (len(TARGET_CLASSES), ', '.join(map(class_name, TARGET_CLASSES)),
               shown, '; yours win: ' + ' '.join(flags) if flags else ''))


def as_flags(settings):
    """['--name', 'value', ...] for a dict of settings."""
    return [word for name in sorted(settings)
            for word in ('--' + name, str(settings[name]))]


def run_script(script, flags, folder, stage, seconds, title):
    """Run the training script with `flags`, into `folder`/`stage` (emptied
    first: each demo replaces the runs of the one before), its output shown
    as it comes; seconds[stage] is its wall time."""
    run_folder = os.path.join(folder, stage)
    if os.path.isdir(run_folder):
        shutil.rmtree(run_folder)
    command = [sys.executable, script] + flags + [
        '--checkpoint_path', os.path.join(run_folder, 'checkpoints'),
        '--filewriter_path', os.path.join(run_folder, 'tensorboard')]
    print('\n== Demo: %s ==\n%s' % (title, ' '.join(
        shlex.quote(word) for word in ['python'] + command[1:])), flush=True)
    start = time.time()
    process = subprocess.Popen(command)
    try:
        status = process.wait()
    except KeyboardInterrupt:  # the script got the Ctrl-C too
        try:
            process.wait()  # it stops after its current step
        except KeyboardInterrupt:  # a second Ctrl-C: stop it at once
            process.kill()
            process.wait()
        raise DemoError('Demo stopped (Ctrl-C). Run it again to start over.')
    if status != 0:
        raise DemoError('Demo stopped: %s ended with exit status %d; its '
                        'message is above.' % (title, status))
    seconds[stage] = time.time() - start


def pretrain(script, folder, plan, extra_flags, seconds):
    """Train the source task from scratch with `extra_flags` too, and keep
    its best weights as `folder`/pretrained.npy."""
    start = time.time()
    lists = make_image_set(
        os.path.join(folder, 'source'), SOURCE_CLASSES,
        plan['source_train_per_class'], plan['source_val_per_class'],
        plan['data_seed'])
    flags = as_flags(dict(train_file=lists[0], val_file=lists[1],
                          replacementpath='', num_classes=len(SOURCE_CLASSES),
                          num_epochs=plan['pretrain_epochs'],
                          batch_size=plan['pretrain_batch_size'],
                          seed=plan['pretrain_seed'], display_step=10,
                          keep_checkpoints=1))
    run_script(script, ['--scratch'] + flags + extra_flags, folder,
               'pretrain', seconds,
               'pretraining, once: %d source classes (%s) from scratch'
               % (len(SOURCE_CLASSES),
                  ', '.join(map(class_name, SOURCE_CLASSES))))
    export_weights(os.path.join(folder, 'pretrain', 'checkpoints', 'best'),
                   os.path.join(folder, 'pretrained.npy'))
    seconds['pretrain'] = time.time() - start  # with the pictures and export


def export_weights(checkpoint, out_path):
    """Write the weights of a checkpoint (`.../best`) in the layout of
    bvlc_alexnet.npy, {'conv1': [weights, biases], ..., 'fc8': [...]}, as
    tools/export_weights.py does."""
    from model_files import ExportWeightsError, export_weights as export
    from run_folder import CheckpointError
    try:
        export(checkpoint, out_path, overwrite=True)
    except (CheckpointError, ExportWeightsError) as error:
        raise DemoError('Cannot save the pretrained weights as %s: %s'
                        % (out_path, error))
    print('Saved the pretrained weights as %s.' % out_path)


def check_pretrained(path):
    """Stop unless the file to reuse holds the source task's fc8."""
    import weights as weights_io
    again = 'Delete it, and the demo pretrains again.'
    try:
        fc8 = weights_io.read_weights(path).get('fc8', {}).get('weights')
    except weights_io.WeightsFileError as error:
        raise DemoError('%s is not the demo\'s pretraining: %s\n%s'
                        % (path, error, again))
    expected = (4096, len(SOURCE_CLASSES))
    if fc8 is None or fc8.shape != expected:
        raise DemoError('%s is not the demo\'s pretraining: its fc8 weights '
                        'are %s, not %s. %s' % (path, None if fc8 is None
                                                else fc8.shape, expected,
                                                again))


def read_val_accuracies(run_folder):
    """The validation accuracy of each epoch, from a run's history.csv."""
    with open(os.path.join(run_folder, 'history.csv'), newline='') as f:
        return [float(row['val_acc']) for row in csv.DictReader(f)]


def summary(folder, seconds):
    """The lesson's answer: each run's best and last validation accuracy
    beside the chance level, and the time of each stage."""
    lines = ['\nThe lesson, on %d target classes (guessing scores %.1f%%):'
             % (len(TARGET_CLASSES), 100.0 / len(TARGET_CLASSES))]
    for stage, name in (('finetune', 'fine-tuned from pretrained.npy'),
                        ('scratch', 'trained from scratch')):
        accuracies = read_val_accuracies(
            os.path.join(folder, stage, 'checkpoints'))
        best = max(accuracies)
        lines.append('  %-30s best %5.1f%% (epoch %d), last %5.1f%%  %4.0f s'
                     % (name, 100 * best, accuracies.index(best) + 1,
                        100 * accuracies[-1], seconds[stage]))
    if 'pretrain' in seconds:
        lines.append('  %-30s %41.0f s' % ('pretraining (once)',
                                           seconds['pretrain']))
    lines.append('  %-30s %41.0f s' % ('the whole demo',
                                       time.time() - seconds['start']))
    return '\n'.join(lines)


def draw_comparison(folder):
    """`folder`/compare.png by tools/compare_runs.py, where matplotlib is
    installed; a failure to draw does not spoil the lesson."""
    picture = os.path.join(folder, 'compare.png')
    if importlib.util.find_spec('matplotlib') is None:
        print('pip install matplotlib, and the next demo draws the curves '
              'into %s.' % picture)
        return
    tool = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'tools',
                        'compare_runs.py')
    runs = [os.path.join(folder, stage, 'checkpoints')
            for stage in ('finetune', 'scratch')]
    done = subprocess.run([sys.executable, tool] + runs + [
        '--labels', 'fine-tuned,from scratch', '--out', picture],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        universal_newlines=True)
    print('The curves: %s' % picture if done.returncode == 0 else
          'Could not draw %s:\n%s' % (picture, done.stdout))
