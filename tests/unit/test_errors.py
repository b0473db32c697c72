"""errors: one tree under AIOSError, each error where its callers look for it too."""

from __future__ import annotations

import pytest

from aios_instance import errors
from aios_instance.control.params import UpdateResultError as FromParams
from aios_instance.metrics import UnknownMetricError as FromMetrics
from aios_instance.testing import BlockTestError as FromTesting


def test_every_error_is_an_aios_error() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.AIOSError), name


def test_errors_keep_the_builtins_callers_caught_before() -> None:
    assert issubclass(errors.UpdateResultError, ValueError)
    assert issubclass(errors.UnknownMetricError, KeyError)
    assert issubclass(errors.UnknownMetricError, ValueError)


def test_re_exported_where_they_are_raised() -> None:
    assert (FromParams, FromMetrics, FromTesting) == (
        errors.UpdateResultError,
        errors.UnknownMetricError,
        errors.BlockTestError,
    )


def test_a_job_error_carries_its_job() -> None:
    with pytest.raises(errors.PacketDecodeError) as caught:
        raise errors.PacketDecodeError("bad bytes", session_id="cam", seq_no=4)
    assert (caught.value.session_id, caught.value.seq_no, caught.value.message) == (
        "cam",
        4,
        "bad bytes",
    )
