"""The run folder: everything a training run keeps, written from one place.

What a run writes into its `checkpoint_path` (runs/finetune/checkpoints or
runs/scratch/checkpoints by default):

    epoch-N.*        the newest epoch: weights, momentum and counters, what
                     --resume needs (older ones only if keep_checkpoints > 1)
    best.*           the weights of the epoch with the best validation
                     accuracy: what evaluate.py and predict.py need
    interrupted-N.*  where Ctrl-C stopped epoch N; removed once epoch N is
                     saved
    history.csv      one row per epoch (accuracies as fractions, 0..1)
    config.json      the settings of the run, and what it loaded
    tensorboard/     the curves for TensorBoard (unless filewriter_path is set)
    .lock            the process ID of the run writing here

`Run` is the context manager the training scripts use around their epochs;
the rest reads and writes the files, and `latest_checkpoint` and
`best_checkpoint` find checkpoints from the folder's own files (never from
TensorFlow's `checkpoint` file, whose paths may point where the folder was
before it was moved).
"""
import os
import re
import shutil

import numpy as np

from alexnet import LAYERS, tf, variable
from loop import Progress, StopOnSignals, StopRequested
from runfiles import (HISTORY_COLUMNS, RunFolderError, RunLock, SaveError,
                      checkpoint_numbers, latest_checkpoint, run_config,
                      read_history, remove_checkpoint, resume_command,
                      run_files, write_config, write_history)

#: Settings a resumed run must share with the run it continues: they shape
#: the graph, fix the order, crops and dropout masks of the epochs to come,
#: or define what the validation accuracy measures. (learning_rate,
#: num_epochs and the display and output settings may change.)
RESUME_MUST_MATCH = ('num_classes', 'train_layers', 'skip_layer', 'batch_size',
                     'seed', 'augment', 'dropout_rate', 'new_layer_lr_mult',
                     'momentum', 'weight_decay', 'train_file', 'val_file',
                     'loader')


class RunStopped(Exception):
    """The run stopped before its last epoch (Ctrl-C, SIGTERM); the message
    says what was saved and how to continue."""


class Run(object):
    """A training run in its folder: new, or continued with --resume.

        with runs.Run(sess, model, config, train_data, val_data) as run:
            for epoch in run.epochs():
                progress = run.start_epoch(epoch)
                ... the steps, progress.update(loss, correct) ...
                run.end_epoch(progress, val_loss, val_acc)

    Entering takes the folder (a lock; a new run never writes over an old
    one), restores the newest checkpoint with --resume, and writes
    config.json. Ctrl-C (or SIGTERM) lets the step finish, saves
    interrupted-N and stops with the command that continues the run.
    """

    def __init__(self, session, model, config, train_data, val_data):
        self.session, self.model, self.config = session, model, config
        self.train_data, self.val_data = train_data, val_data
        self.mode = 'finetune' if model.loaded_layers else 'scratch'
        self.folder = config.checkpoint_path.format(mode=self.mode)
        self.log_folder = (config.filewriter_path.format(mode=self.mode)
                           if config.get('filewriter_path') else
                           os.path.join(self.folder, 'tensorboard'))
        self.history_file = os.path.join(self.folder, 'history.csv')
        self.config_file = os.path.join(self.folder, 'config.json')
        self.history, self.first_epoch = [], 1
        self.current_epoch = None
        self.lock = RunLock(self.folder)
        self.stop = StopOnSignals()
        self.writer = None
        self._make_state()

    def _make_state(self):
        """The counters a checkpoint keeps beside the weights, and savers."""
        with tf.variable_scope('run'):
            self.epoch = tf.Variable(0, trainable=False, name='epochs_done')
            # Where a run stopped by Ctrl-C stands within its epoch: the
            # steps done, and the sums of loss, correct answers and images,
            # and the seconds spent so far.
            self.step_in_epoch = tf.Variable(0, trainable=False,
                                             name='step_in_epoch')
            self.epoch_sums = tf.Variable(np.zeros(4), trainable=False,
                                          name='epoch_sums')
            self.best_acc = tf.Variable(-1.0, trainable=False,
                                        dtype=tf.float64, name='best_val_acc')
        state = [self.epoch, self.step_in_epoch, self.epoch_sums,
                 self.best_acc]
        self.session.run(tf.variables_initializer(state))
        # Epoch checkpoints keep everything (momentum included); best keeps
        # only the weights, all that evaluation needs (half the size).
        self.saver = tf.train.Saver(max_to_keep=None, save_relative_paths=True)
        self.best_saver = tf.train.Saver(
            [variable(layer, kind) for layer in LAYERS
             for kind in ('weights', 'biases')], max_to_keep=None)

    # ---- entering and leaving ---------------------------------------------

    def __enter__(self):
        self.lock.acquire()
        try:
            removed = remove_temporary_files(self.folder)
            if removed:
                print('Removed %d temporary files of a save that was killed '
                      'half-way.' % removed)
            if self.config.resume:
                self._resume()
            else:
                self._start()
            self.writer = tf.summary.FileWriter(self.log_folder,
                                                self.session.graph)
            if self.config.resume:  # hide curves of epochs after the restore
                self.writer.add_session_log(
                    tf.SessionLog(status=tf.SessionLog.START),
                    self.first_epoch - 1)
        except BaseException:
            self.lock.release()
            raise
        self._announce()
        self.stop.__enter__()
        return self

    def _start(self):
        existing = run_files(self.folder)
        if existing:
            raise RunFolderError(
                '%s already holds a run (%s). To continue it, add --resume; '
                'for a new run pass another --checkpoint_path (its '
                'TensorBoard logs go with it), or move the old one away: '
                'mv %s %s-old' % (self.folder, ', '.join(existing[:4]),
                                  self.folder, self.folder))
        write_config(self._record(), self.config_file)

    def _resume(self):
        latest = latest_checkpoint(self.folder)
        if latest is None:
            raise RunFolderError(
                '--resume: no checkpoint in %s. Run without --resume to '
                'start a new run there (move away what it holds first).'
                % self.folder)
        check_same_settings(self._record(), run_config(self.folder),
                            self.config_file)
        try:
            self.saver.restore(self.session, latest)
        except (tf.errors.OpError, ValueError) as error:
            raise RunFolderError(
                '--resume: cannot restore %s (%s). If the file is damaged, '
                'delete it and resume from an older checkpoint, or start a '
                'new run.' % (latest, getattr(error, 'message', error)))
        done = self.session.run(self.epoch)
        self.first_epoch = done + 1
        self.history = [row for row in read_history(self.history_file)
                        if row['epoch'] <= done]
        print('Resuming from %s: %d epochs done.' % (latest, done))

    def _record(self):
        """What config.json says: the settings and what the run loaded."""
        return dict(self.config, mode=self.mode,
                    scratch=self.mode == 'scratch',
                    loaded_layers=list(self.model.loaded_layers),
                    loader=self.train_data.loader,
                    tensorflow=tf.__version__)

    def _announce(self):
        if self.mode == 'finetune':
            source = 'from the weights in %s (fine-tuning; %s loaded)' % (
                self.model.WEIGHTS_PATH, ', '.join(self.model.loaded_layers))
        else:
            source = 'from scratch'
        print('Training %s: %d training and %d validation images, %d '
              'classes. Random guessing scores %.2f%%.'
              % (source, self.train_data.data_size, self.val_data.data_size,
                 self.config.num_classes, 100.0 / self.config.num_classes))
        print('Checkpoints and history in %s; curves: tensorboard --logdir %s'
              % (self.folder, self.log_folder))

    def __exit__(self, error_type, error, traceback):
        self.stop.__exit__()
        try:
            if isinstance(error, StopRequested):
                self._save_interrupted(error.progress)
            if error_type is KeyboardInterrupt:
                raise RunStopped(self._abandoned_message())
            if error_type is None and self.history:
                best = max(self.history, key=lambda row: row['val_acc'])
                print('Best validation accuracy %.2f%% in epoch %d (chance: '
                      '%.2f%%).' % (100 * best['val_acc'], best['epoch'],
                                    100.0 / self.config.num_classes))
        finally:
            if self.writer is not None:
                self.writer.close()
            self.lock.release()
        return False

    def _abandoned_message(self):
        epoch = self.session.run(self.epoch) + 1
        if epoch == 1:
            return ('\nInterrupted in epoch 1, before any checkpoint. To '
                    'start over, move away %s and run the same command.'
                    % self.folder)
        return ('\nInterrupted in epoch %d, which is abandoned; the '
                'checkpoint of epoch %d in %s is kept. To continue:\n  %s'
                % (epoch, epoch - 1, self.folder, resume_command()))

    # ---- the epochs ---------------------------------------------------------

    def epochs(self):
        """The numbers of the epochs still to train."""
        return range(self.first_epoch, self.config.num_epochs + 1)

    def start_epoch(self, epoch):
        """Set the training generator to epoch `epoch` (its order, crops and
        flips) and return its Progress; a resumed epoch continues where its
        interrupted-N checkpoint stands."""
        self.current_epoch = epoch
        step, sums = self.session.run([self.step_in_epoch, self.epoch_sums])
        batch_size = self.config.batch_size
        self.train_data.reset_pointer(epoch=epoch - 1,
                                      position=step * batch_size)
        steps = self.train_data.steps_per_epoch(batch_size)
        return Progress('Epoch %d/%d' % (epoch, self.config.num_epochs),
                        steps, self.config.display_step,
                        self.config.num_classes, self.config.learning_rate,
                        first_step=(epoch - 1) * steps, step=int(step),
                        sums=tuple(sums),
                        stop_requested=lambda: self.stop.requested)

    def end_epoch(self, progress, val_loss, val_acc):
        """After validation: the epoch line, history.csv, TensorBoard and the
        checkpoints. Raises RunStopped if Ctrl-C came in the last step."""
        progress.close()
        epoch = self.current_epoch
        if not progress.seen:
            raise RunFolderError('no training image of %s could be read'
                                 % self.train_data.class_list)
        seconds = progress.seconds
        row = dict(epoch=epoch, train_loss=progress.loss,
                   train_acc=progress.accuracy, val_loss=float(val_loss),
                   val_acc=float(val_acc), seconds=seconds,
                   images_per_sec=self.train_data.data_size / seconds)
        is_best = val_acc > self.session.run(self.best_acc)
        if is_best:
            self.best_acc.load(val_acc, self.session)
        self.epoch.load(epoch, self.session)
        self.step_in_epoch.load(0, self.session)  # the epoch is whole
        self.epoch_sums.load(np.zeros(4), self.session)
        self._print_epoch(row, is_best)
        self._write_summaries(row)
        self.history.append(row)
        # history.csv first: a crash between the two leaves the previous
        # checkpoint, and --resume drops the history rows after it.
        write_history(self.history, self.history_file)
        self._save(epoch, is_best)
        if self.stop.requested:
            raise RunStopped('\nStopped after epoch %d; its checkpoint is in '
                             '%s. To continue:\n  %s'
                             % (epoch, self.folder, resume_command()))

    def _print_epoch(self, row, is_best):
        skipped = len(self.train_data.skipped) + len(self.val_data.skipped)
        print('Epoch %d/%d: train loss %.4f acc %.2f%% | val loss %.4f acc '
              '%.2f%%%s | %.1f img/s, %.0f s%s'
              % (row['epoch'], self.config.num_epochs, row['train_loss'],
                 100 * row['train_acc'], row['val_loss'], 100 * row['val_acc'],
                 ' (best)' if is_best else '', row['images_per_sec'],
                 row['seconds'],
                 ' | %d unreadable images skipped' % skipped if skipped
                 else ''))

    def _write_summaries(self, row):
        """Per-epoch curves for TensorBoard."""
        values = [('train/loss', row['train_loss']),
                  ('train/accuracy', row['train_acc']),
                  ('validation/loss', row['val_loss']),
                  ('validation/accuracy', row['val_acc']),
                  ('learning_rate', self.config.learning_rate)]
        summary = tf.Summary(value=[tf.Summary.Value(tag=tag,
                                                     simple_value=value)
                                    for tag, value in values])
        self.writer.add_summary(summary, row['epoch'])
        self.writer.flush()

    def _save(self, epoch, is_best):
        """best (if it is), then epoch-N; then the checkpoints that are no
        longer needed go: older epochs beyond keep_checkpoints, and the
        interrupted-M of epochs now saved whole.

        TensorFlow writes a checkpoint's .index file last, so a crash while
        saving leaves an incomplete checkpoint that latest_checkpoint does
        not see, and the previous one in charge. A failed save (disk full,
        no permission) raises SaveError with the reason.
        """
        try:
            # best first: the epoch checkpoint records the best accuracy so
            # far, so once it exists the best checkpoint must exist too.
            if is_best:
                self.best_saver.save(self.session,
                                     os.path.join(self.folder, 'best'),
                                     write_state=False)
            self.saver.save(self.session, os.path.join(self.folder, 'epoch'),
                            global_step=epoch, write_state=False)
        except (tf.errors.OpError, OSError, ValueError) as error:
            raise SaveError(
                'Could not save the checkpoint of epoch %d in %s: %s\nThe '
                'previous checkpoint is kept. Free some space or fix the '
                'folder\'s permissions, then continue with:\n  %s'
                % (epoch, self.folder, getattr(error, 'message', error),
                   resume_command()))
        prune_checkpoints(self.folder, self.config.keep_checkpoints)

    def _save_interrupted(self, progress):
        """Save where a stopped epoch stands, as interrupted-N, and stop."""
        epoch = self.current_epoch
        self.step_in_epoch.load(progress.step, self.session)
        self.epoch_sums.load(np.array(progress.sums(), np.float64),
                             self.session)
        prefix = os.path.join(self.folder, 'interrupted-%d' % epoch)
        try:
            self.saver.save(self.session, prefix, write_state=False)
        except KeyboardInterrupt:
            raise RunStopped(
                '\nStopped in epoch %d while saving; that save is abandoned '
                'and the checkpoint of epoch %d is kept. To continue:\n  %s'
                % (epoch, epoch - 1, resume_command()))
        except (tf.errors.OpError, OSError) as error:
            raise RunStopped(
                'Stopped in epoch %d, but the checkpoint could not be saved '
                '(%s); the one of epoch %d is kept. To continue:\n  %s'
                % (epoch, error, epoch - 1, resume_command()))
        raise RunStopped('\nStopped in epoch %d after step %d; saved %s. To '
                         'continue:\n  %s' % (epoch, progress.step, prefix,
                                              resume_command()))


def check_same_settings(record, saved, config_file):
    """Refuse a --resume that changes a setting the saved run depends on."""
    changed = ['%s: %r in the run, %r now' % (key, saved[key], record.get(key))
               for key in RESUME_MUST_MATCH
               if key in saved and saved[key] != record.get(key)]
    if changed:
        raise RunFolderError(
            '--resume would change settings of the saved run:\n  %s\nResume '
            'with the settings of %s (and the same script: finetune.py '
            'decodes with OpenCV, finetune_pil.py with Pillow), or start a '
            'new run in another --checkpoint_path.'
            % ('\n  '.join(changed), config_file))


def prune_checkpoints(folder, keep):
    """Keep the newest `keep` epoch-N checkpoints; drop interrupted-M once
    epoch M is saved whole (or a newer epoch is)."""
    epochs = checkpoint_numbers(folder, 'epoch')
    for number in epochs[:-keep] if keep > 0 else []:
        remove_checkpoint(os.path.join(folder, 'epoch-%d' % number))
    newest = epochs[-1] if epochs else 0
    for number in checkpoint_numbers(folder, 'interrupted'):
        if number <= newest:
            remove_checkpoint(os.path.join(folder, 'interrupted-%d' % number))


def remove_temporary_files(folder):
    """Delete what a save killed half-way leaves: TensorFlow writes a
    checkpoint's data into `*.tempstate*` files or a `*_temp*` folder first
    (hundreds of MB). Returns how many were removed."""
    if not os.path.isdir(folder):
        return 0
    removed = 0
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if '.tempstate' in name:
            os.remove(path)
        elif re.search(r'_temp(_[0-9a-f]+)?(/|$)', name) and os.path.isdir(path):
            shutil.rmtree(path)
        else:
            continue
        removed += 1
    return removed
