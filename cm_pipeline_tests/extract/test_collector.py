"""The extraction collects young objects less often while it runs, and restores the thresholds after."""

import gc
import threading

import pytest

from cm_pipeline.extract.collector import YOUNG_THRESHOLD, fewer_collections


@pytest.fixture
def default_thresholds():
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)


def test_raised_while_running_restored_after_even_on_error(default_thresholds):
    with pytest.raises(RuntimeError), fewer_collections():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
        assert gc.isenabled()  # cycles are still collected
        raise RuntimeError("the run failed")
    assert gc.get_threshold() == (700, 10, 10)


def test_a_higher_threshold_set_by_the_user_is_kept(default_thresholds):
    gc.set_threshold(10 * YOUNG_THRESHOLD, 5, 5)
    with fewer_collections():
        assert gc.get_threshold() == (10 * YOUNG_THRESHOLD, 5, 5)
    assert gc.get_threshold() == (10 * YOUNG_THRESHOLD, 5, 5)


def test_overlapping_runs_restore_once_the_last_one_ends(default_thresholds):
    first_in, second_out = threading.Event(), threading.Event()

    def second():
        first_in.wait()
        with fewer_collections():
            pass
        second_out.set()

    thread = threading.Thread(target=second)
    thread.start()
    with fewer_collections():
        first_in.set()
        second_out.wait()
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD  # the second run's end did not restore early
    thread.join()
    assert gc.get_threshold() == (700, 10, 10)
