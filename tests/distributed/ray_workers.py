"""Replicas for the Ray tests (pickled by value into the actors): the least-squares problem of
dist_workers, a shard per actor index, and closures that fail on purpose."""

import os
import time

import numpy as np

N, D = 67, 12


def problem():
    g = np.random.default_rng(7)
    X = g.standard_normal((N, D))
    return X, X @ g.standard_normal(D) + 0.1 * g.standard_normal(N)


def loss(theta, rows):
    X, y = problem()
    e = X[rows] @ theta - y[rows]
    return float(np.mean(e * e)), len(rows)


class Replicas:
    """``Replicas(shards)(index)``: theta (the same start everywhere) and the closure on shard
    index % shards (``shards=1``: the whole data set). ``fail=(index, call, kind)`` makes that
    actor's closure fail at that call ("die", "hang" or "nan")."""

    def __init__(self, shards=1, fail=None):
        self.shards, self.fail = shards, fail

    def __call__(self, index):
        theta = np.random.default_rng(1).standard_normal(D)
        rows = np.array_split(np.arange(N), self.shards)[index % self.shards]
        calls = []

        def closure():
            calls.append(1)
            if self.fail and self.fail[0] == index and len(calls) == self.fail[1]:
                kind = self.fail[2]
                if kind == "die":
                    os._exit(17)
                if kind == "hang":
                    time.sleep(60)
                if kind == "nan":
                    return float("nan")
            return loss(theta, rows)

        return [theta], closure
