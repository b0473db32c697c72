"""runtime/outcome.py: every return shape the spec allows judged in one place, and the values."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aios_instance import AIOSPacket, OnDataResult, PreProcessResult
from aios_instance.runtime.outcome import (
    Accumulator,
    Failure,
    Outcome,
    PipelineResult,
    Problem,
    classify_on_data,
    classify_preprocess,
    per_entry,
    raised,
)
from aios_instance.runtime.pipeline import Failure as PipelineFailure
from aios_instance.runtime.pipeline import PipelineResult as PipelinePipelineResult

PROPERTY = settings(max_examples=150, deadline=None, database=None)


def entry(value: int = 0) -> PreProcessResult:
    return PreProcessResult(packet=AIOSPacket(data="{}"), extra_data={"v": value})


# -- on_data -------------------------------------------------------------------------------------


def test_one_result_comes_back_as_the_users_own_object() -> None:
    result = OnDataResult(output={"a": 1})
    assert classify_on_data((True, result)) is result


def test_held_shapes() -> None:
    assert classify_on_data((True, None)) is None
    assert classify_on_data((True, [])) is None
    assert classify_on_data((True, ())) is None


def test_several_results_and_the_lenient_dict() -> None:
    one, two = OnDataResult(output={"n": 1}), OnDataResult(output={"n": 2})
    assert classify_on_data((True, [one, two])) == (one, two)
    assert classify_on_data((True, (one,))) == (one,)
    lenient = classify_on_data((True, {"bare": 1}))
    assert isinstance(lenient, OnDataResult) and lenient.output == {"bare": 1}


@pytest.mark.parametrize(
    ("ret", "reason"),
    [
        ((False, "error"), "on_data failed: error"),
        ((0, "zero is false"), "on_data failed: zero is false"),
        (42, "on_data returned int 42; expected (bool, OnDataResult)"),
        (None, "on_data returned NoneType None; expected (bool, OnDataResult)"),
        ((True, 1, 2), "on_data returned tuple (True, 1, 2); expected (bool, OnDataResult)"),
        ((True, "text"), "on_data returned (True, str 'text'); expected OnDataResult"),
        ((True, [OnDataResult(), 3]), "expected OnDataResult"),
    ],
)
def test_wrong_shapes_and_refusals_are_problems(ret: Any, reason: str) -> None:
    verdict = classify_on_data(ret)
    assert isinstance(verdict, Problem) and reason in verdict.reason
    assert verdict.traceback is None


def test_a_raised_exception_keeps_its_traceback_and_passes_through() -> None:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        problem = raised("on_data", exc)
    assert problem.reason == "on_data raised ValueError('boom')"
    assert problem.traceback is not None and "ValueError: boom" in problem.traceback
    assert classify_on_data(problem) is problem


def test_on_data_batch_results_must_match_the_entries() -> None:
    rets = [(True, None), (True, None)]
    assert per_entry(rets, 2) is rets
    problems = per_entry(rets, 3)
    assert len(problems) == 3
    assert problems[0] == Problem("on_data_batch returned 2 results for 3 entries")


ANY_RETURN = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3).map(tuple)
        | st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=3), inner, max_size=2)
        | st.builds(lambda v: (True, OnDataResult(output={"v": v})), inner)
    ),
    max_leaves=8,
)


@PROPERTY
@given(ret=ANY_RETURN)
def test_every_return_value_gets_exactly_one_verdict(ret: Any) -> None:
    verdict = classify_on_data(ret)
    assert (
        verdict is None
        or isinstance(verdict, (OnDataResult, Problem))
        or (type(verdict) is tuple and all(isinstance(v, OnDataResult) for v in verdict))
    )


# -- on_preprocess -------------------------------------------------------------------------------


def test_the_common_shape_returns_the_users_own_list() -> None:
    entries = [entry()]
    assert classify_preprocess((True, entries)) is entries


def test_other_accepted_shapes() -> None:
    one, two = entry(1), entry(2)
    assert classify_preprocess((True, one)) == [one]  # the older SDK: a bare PreProcessResult
    assert classify_preprocess((True, (one, two))) == [one, two]
    assert classify_preprocess((True, [one, two])) == [one, two]
    assert classify_preprocess((True, None)) == []  # held
    assert classify_preprocess((True, [])) == []  # held


@pytest.mark.parametrize(
    ("ret", "reason"),
    [
        ((False, "bad thing"), "on_preprocess rejected the packet: bad thing"),
        ("what", "on_preprocess returned str 'what'; expected (bool, [PreProcessResult])"),
        ((True, [1]), "on_preprocess returned (True, list [1]); expected PreProcessResults"),
        ((True, "x"), "expected PreProcessResults"),
    ],
)
def test_preprocess_problems(ret: Any, reason: str) -> None:
    problem = classify_preprocess(ret)
    assert isinstance(problem, Problem) and reason in problem.reason


# -- the accumulator and the values --------------------------------------------------------------


def test_a_failure_is_built_one_way() -> None:
    acc = Accumulator()
    packet = AIOSPacket(session_id="s", seq_no=3)
    acc.fail(Outcome.ROUTING_ERROR, "route", "no such place", packet, (b"raw",))
    acc.reject("on_data", Problem("bad", "Traceback..."), packet, (b"raw",))
    acc.fail(Outcome.BAD_INPUT, "decode", "garbage", None, (b"\xff",))
    assert acc.freeze().failures == (
        Failure(Outcome.ROUTING_ERROR, "route", "no such place", "s", 3, None, (b"raw",)),
        Failure(Outcome.USER_ERROR, "on_data", "bad", "s", 3, "Traceback...", (b"raw",)),
        Failure(Outcome.BAD_INPUT, "decode", "garbage", "", 0, None, (b"\xff",)),
    )


def test_freeze_gives_immutable_sequences() -> None:
    acc = Accumulator(held=2)
    acc.waiting_raws.append(b"w")
    acc.released_raws.append(b"r")
    acc.phase_s["route"] = 0.5
    result = acc.freeze()
    assert result == PipelineResult((), (), 2, (b"w",), (b"r",), {"route": 0.5})
    acc.waiting_raws.append(b"later")
    assert result.waiting_raws == (b"w",)


def test_the_pipeline_module_still_exports_the_values() -> None:
    assert PipelineFailure is Failure and PipelinePipelineResult is PipelineResult
