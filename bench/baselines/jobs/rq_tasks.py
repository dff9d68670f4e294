"""The tasks RQ workers run in bench/jobs.py (importable by the workers: -P this folder)."""

import os
import time


def noop():
    """The throughput job: does nothing."""
    return


def warm(seconds):
    """A warm-up job: returns the pid of the worker that ran it."""
    time.sleep(seconds)
    return os.getpid()


def sleepy(seconds):
    """A low job of the priority-honesty test."""
    time.sleep(seconds)


def started():
    """The critical job of the priority-honesty test: when it started."""
    return time.time()
