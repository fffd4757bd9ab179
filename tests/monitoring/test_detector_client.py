"""Frames to wire tables, and the client's errors when no server answers (no server needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from loopstack.core.errors import InvalidInput
from loopstack.core.processes import free_port
from loopstack.monitoring.detector_client import DetectorClient, frame_to_columns
from loopstack.monitoring.errors import DetectorServerUnavailable


def test_frame_to_columns_gives_json_native_values_and_nulls() -> None:
    frame = pd.DataFrame(
        {
            "f": [1.5, np.nan],
            "i": np.array([1, 2], dtype=np.int64),
            "n": pd.array([3, None], dtype="Int64"),
            "s": ["clear", None],
            "c": pd.Categorical(["a", "b"]),
            "b": [True, False],
        }
    )
    columns = frame_to_columns(frame)["columns"]
    assert columns == {
        "f": [1.5, None],
        "i": [1, 2],
        "n": [3, None],
        "s": ["clear", None],
        "c": ["a", "b"],
        "b": [True, False],
    }
    assert all(
        type(v) in (int, float, str, bool, type(None)) for vs in columns.values() for v in vs
    )


def test_frame_to_columns_refuses_timestamps() -> None:
    frame = pd.DataFrame({"t": pd.to_datetime(["2011-01-01"])})
    with pytest.raises(InvalidInput, match="column 't' has dtype datetime64"):
        frame_to_columns(frame)


def test_frame_to_columns_refuses_infinity() -> None:
    with pytest.raises(InvalidInput, match="column 'x' has infinite values"):
        frame_to_columns(pd.DataFrame({"x": [1.0, np.inf]}))


def test_no_server_is_unavailable() -> None:
    with DetectorClient(f"http://127.0.0.1:{free_port()}", timeout=2.0) as client:
        assert client.healthy() is False
        with pytest.raises(DetectorServerUnavailable, match="make drift-env"):
            client.score("k", pd.DataFrame({"x": [1.0]}))
