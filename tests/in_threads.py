"""Run callables on threads of their own, released together (the concurrency tests' helper)."""
import threading


def run_in_threads(*jobs):
    """Run the callables at once, one thread each (released together by a barrier); their
    results in order. The first exception raised in a thread is re-raised here."""
    barrier = threading.Barrier(len(jobs))
    results, errors = [None] * len(jobs), []

    def work(i, job):
        barrier.wait()
        try:
            results[i] = job()
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results
