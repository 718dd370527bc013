"""The restricted loader reads CIFAR-style pickles and refuses anything that would run code."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from node.data.safe_pickle import load_restricted


class RunsACommand:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_reads_a_dict_of_arrays_lists_and_strings(tmp_path):
    data = {"data": np.arange(12, dtype=np.uint8).reshape(2, 6), "labels": [1, 2], "name": "b"}
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        path = tmp_path / f"p{protocol}"
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        loaded = load_restricted(path)
        assert np.array_equal(loaded["data"], data["data"]) and loaded["data"].dtype == np.uint8
        assert loaded["labels"] == [1, 2] and loaded["name"] == "b"


def test_refuses_a_pickle_that_would_run_a_command(tmp_path):
    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({"data": RunsACommand()}, protocol=2))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
            load_restricted(path)
    finally:
        os.chdir(cwd)
    assert not (tmp_path / "pwned").exists()


def test_refuses_object_arrays_and_non_dicts(tmp_path):
    path = tmp_path / "objects"
    path.write_bytes(pickle.dumps({"data": np.array([1, "a"], dtype=object)}, protocol=2))
    with pytest.raises(pickle.UnpicklingError):
        load_restricted(path)
    path.write_bytes(pickle.dumps([1, 2], protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="expected a dict"):
        load_restricted(path)
