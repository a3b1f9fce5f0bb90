"""The pieces of the training loop that the scripts call in each epoch.

    batches()       the rest of an epoch, as images or cached features
    Progress        sums of an epoch, the progress line, the loss checks,
                    and where a Ctrl-C stops the epoch
    validate()      loss and accuracy over every validation image
    StopOnSignals   Ctrl-C and SIGTERM: finish the step, then stop
"""
import math
import signal
import sys
import threading
import time

from datagenerator import ImageError, check_dtype

#: A loss this many times ln(num_classes), the loss of a net that guesses,
#: means the run has diverged: the right class gets a probability below
#: C**-50 (231 for 102 classes; a diverging run passes it within an epoch
#: and goes on to 1e4 and beyond). A run on a tiny set at a high rate may
#: wander to 10 ln C and come back: that is left alone.
DIVERGED_LOSS_FACTOR = 50.0


class DivergedError(FloatingPointError):
    """The loss became NaN or infinite, or exploded: the run has diverged."""


class StopRequested(Exception):
    """Raised after the step during which Ctrl-C (or SIGTERM) came."""

    def __init__(self, progress):
        Exception.__init__(self, progress.step)
        self.progress = progress


def batches(data, batch_size, tensor, features=None):
    """The rest of `data`'s current epoch: (inputs, one-hot labels) batches.

    Images (uint8 crops) made in the background while a step runs, or,
    with a FeatureCache, the cached features of the same images. `tensor`
    is what they are fed to: a batch of another dtype is refused (feeding
    float32 images into the uint8 `pixels` would wrap them around
    silently). Batches whose every image was unreadable are left out.
    """
    if features is None:
        source = data.batches(batch_size, prefetch=2)
    else:
        source, tensor = features.batches(data, batch_size), features.tensor
    for inputs, labels in source:
        if len(labels):
            check_dtype(inputs, tensor, data.class_list)
            yield inputs, labels


class Progress(object):
    """One epoch of training: its sums, its progress line, its checks.

    `update(loss, correct)` after each step adds the batch to the epoch's
    sums, prints progress (a live bar on a terminal when tqdm is installed,
    plain lines every `display_step` batches otherwise: logs, notebooks,
    CI) with images/s, time left and the split between waiting for data and
    computing, stops a diverged run, and raises StopRequested once Ctrl-C
    was pressed.

    A resumed epoch starts from what was saved: `step` steps done, the sums
    `loss_sum`, `correct_sum`, `seen`, and `seconds` already spent.
    """

    def __init__(self, title, steps, display_step, num_classes,
                 learning_rate, first_step=0, step=0, sums=(0, 0, 0, 0),
                 stop_requested=lambda: False):
        self.title, self.steps, self.display_step = title, steps, display_step
        self.num_classes, self.learning_rate = num_classes, learning_rate
        self.first_step = first_step  # steps of the run before this epoch
        self.step = self.done_before = step
        self.loss_sum, self.correct_sum, self.seen, self.seconds_before = sums
        self.stop_requested = stop_requested
        self.data_time = self.compute_time = 0.0
        self.images = 0  # images trained on since this object was made
        self.start = self.last = time.time()
        self.bar = _progress_bar(steps, title, step)

    @property
    def global_step(self):
        """Steps made in the run so far, this epoch's included: the number
        that fixes the dropout masks of the next step."""
        return self.first_step + self.step

    def timed(self, batches):
        """The batches, timing how long each one was waited for (data time;
        the rest of a step is compute time)."""
        self.last = time.time()
        for batch in batches:
            now = time.time()
            self.data_time += now - self.last
            self.last = now
            yield batch

    def update(self, loss, correct):
        """Add one step's mean loss and its per-image correctness."""
        now = time.time()
        self.compute_time += now - self.last
        self.last = now
        self.step += 1
        self.check_loss(loss)
        self.loss_sum += float(loss) * len(correct)
        self.correct_sum += float(correct.sum())
        self.seen += len(correct)
        self.images += len(correct)
        self._show()
        if self.stop_requested() and self.step < self.steps:
            self.close()
            raise StopRequested(self)

    def check_loss(self, loss):
        """Stop a run whose loss is NaN, infinite or exploding."""
        limit = DIVERGED_LOSS_FACTOR * math.log(max(self.num_classes, 2))
        if math.isfinite(loss) and loss <= limit:
            return
        what = ('became %s' % loss if not math.isfinite(loss) else
                'exploded to %.4g (a net that guesses scores ln(%d) = %.2f)'
                % (loss, self.num_classes, math.log(self.num_classes)))
        raise DivergedError(
            'The loss %s at step %d of %s: the run has diverged. The '
            'learning rate %g is too high for it: lower it (e.g. '
            '--learning_rate %g) and resume from the last good checkpoint '
            'with --resume, or start afresh.' % (
                what, self.step, self.title.lower(), self.learning_rate,
                self.learning_rate / 10))

    @property
    def loss(self):
        return self.loss_sum / max(self.seen, 1)

    @property
    def accuracy(self):
        return self.correct_sum / max(self.seen, 1)

    @property
    def seconds(self):
        """Seconds spent on this epoch, before an interruption included."""
        return self.seconds_before + time.time() - self.start

    def sums(self):
        """What a checkpoint in the middle of the epoch saves."""
        return [self.loss_sum, self.correct_sum, self.seen, self.seconds]

    def _show(self):
        made = self.step - self.done_before
        elapsed = max(time.time() - self.start, 1e-9)
        rate = self.images / elapsed
        if self.bar is not None:
            self.bar.set_postfix_str('loss %.3f acc %.1f%% %.1f img/s' % (
                self.loss, 100 * self.accuracy, rate))
            self.bar.update(1)
        elif self.step % self.display_step == 0 or self.step == self.steps:
            left = (self.steps - self.step) * elapsed / made
            print('%s [%d/%d] loss %.4f acc %.2f%% | %.1f img/s | data %.2fs '
                  'compute %.2fs | %.0fs left' % (
                      self.title, self.step, self.steps, self.loss,
                      100 * self.accuracy, rate, self.data_time,
                      self.compute_time, left))

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _progress_bar(steps, title, done):
    """A tqdm bar on a terminal; None elsewhere or without tqdm."""
    if not sys.stdout.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=steps, initial=done, desc=title, unit='batch',
                leave=False)


def validate(session, data, batch_size, inputs, labels, losses, correct,
             features=None):
    """Mean loss and accuracy over every readable image of `data`.

    No dropout (keep_prob keeps its default 1.0), centre crops, list order;
    from the cached features when `features` is a FeatureCache.
    `inputs`/`labels` are the tensors to feed, `losses`/`correct` the
    per-image loss and correctness.
    """
    data.reset_pointer(epoch=0)
    if features is not None:
        inputs = features.tensor
    loss_sum = correct_sum = seen = 0.0
    for batch, one_hot in batches(data, batch_size, inputs, features):
        batch_losses, batch_correct = session.run(
            [losses, correct], feed_dict={inputs: batch, labels: one_hot})
        loss_sum += batch_losses.sum()
        correct_sum += batch_correct.sum()
        seen += len(one_hot)
    if not seen:
        raise ImageError('no image of %s could be read' % data.class_list)
    return loss_sum / seen, correct_sum / seen


class StopOnSignals(object):
    """While active, Ctrl-C (SIGINT) and SIGTERM (sent by `kill` or a batch
    system) only set a flag: the training loop finishes its step, saves and
    stops. A second Ctrl-C raises KeyboardInterrupt at once.

        with StopOnSignals() as stop:
            ... if stop.requested: ...

    The previous handlers come back on leaving, and the flag belongs to
    this object alone (nothing process-wide is left set).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print('\nStopping after this step (Ctrl-C again: stop at once).')

    def __enter__(self):
        # Python lets only the main thread set signal handlers.
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        return False
