"""Ctrl-C during fit stops after the current step with a KeyboardInterrupt; the model stays
usable and holds the parameters of that step."""
import os
import signal
import threading
import time

import numpy as np
import pytest

import nerve


def test_ctrl_c_stops_fit_after_a_step(mnist):
    (x, y), _, (tx, _) = mnist
    model = nerve.Sequential([nerve.Dense(300, activation="sigmoid"), nerve.Dense(10, activation="softmax")],
                             input_shape=(784,), threads=2)
    before = model.predict_proba(tx[:10])
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    started = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        # Per-sample SGD over 50,000 images, 20 times: minutes if it were not stopped.
        model.fit(x, y, epochs=20, batch_size=1, optimizer=nerve.SGD(0.01))
    timer.join()
    assert time.monotonic() - started < 10, "stopped within a fraction of a second of the signal"
    after = model.predict_proba(tx[:10])
    assert np.isfinite(after).all() and not (after == before).all(), "the model trained until the interrupt"
