"""Make the next batches in a background thread while the caller works.

The pipeline's overlap of decoding with the training step (the loop in
finetune.py, the generators' `batches(prefetch=...)`, inference.py's
chunks): `prefetched(batches)` is a drop-in iterator over any iterable.
"""
import queue
import threading


def prefetched(batches, depth=2):
    """Iterate over `batches` while a background thread makes the next ones.

    While TensorFlow computes a step (outside Python's lock) the thread
    decodes the following batch, so the step rarely waits for data.

    - Memory stays bounded: at most `depth` finished batches wait in the
      queue, plus the one the thread is making.
    - An error in the thread (a strict generator's unreadable image, with the
      file's name) is raised here, in the training loop, instead of leaving
      it waiting for a batch that never comes.
    - Leaving the loop early (break, an exception in the step) stops the
      thread and waits for it, so no thread keeps decoding for nobody.
    """
    slots = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def offer(item):
        """Queue `item` unless the consumer has gone; True if queued."""
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)  # timeout: look at `stop` again
                return True
            except queue.Full:
                pass
        return False

    def produce():
        try:
            for batch in batches:
                if not offer(batch):
                    return
            offer(done)
        except BaseException as error:  # forwarded to the consumer
            offer(error)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
