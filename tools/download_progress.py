"""Progress of a download: bytes done, rate and time left.

Used by ``download.py``; tqdm, when installed, draws the bar.
"""
import sys
import time


def human(n):
    """1234567 -> '1.2 MB'."""
    for unit in ('B', 'kB', 'MB', 'GB'):
        if n < 1000 or unit == 'GB':
            return ('%d %s' if unit == 'B' else '%.1f %s') % (n, unit)
        n /= 1000.0


class Progress(object):
    """Bytes done, rate and time left for one file.

    A tqdm bar on a terminal; otherwise (tqdm absent, output to a log file)
    a plain line every `every` seconds and one at the end.
    """

    def __init__(self, name, total, done=0, every=10.0):
        self.name, self.total, self.done, self.every = name, total, done, every
        self.start = self.last = time.time()
        self.start_done = done
        self.bar = None
        if sys.stdout.isatty():
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, initial=done, desc=name, unit='B',
                                unit_scale=True, unit_divisor=1000)
            except ImportError:
                pass

    def update(self, n):
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif time.time() - self.last >= self.every:
            self.last = time.time()
            print(self.line(), flush=True)

    def line(self, final=False):
        elapsed = max(time.time() - self.start, 1e-6)
        rate = (self.done - self.start_done) / elapsed
        text = '%s: %s' % (self.name, human(self.done))
        if self.total:
            text += ' of %s (%d%%)' % (human(self.total),
                                       100 * self.done // self.total)
        text += ', %s/s' % human(rate)
        if final:
            text += ', %.0f s' % elapsed
        elif self.total and rate > 0:
            text += ', %.0f s left' % ((self.total - self.done) / rate)
        return text

    def close(self):
        if self.bar is not None:
            self.bar.close()
        else:
            print(self.line(final=True), flush=True)
