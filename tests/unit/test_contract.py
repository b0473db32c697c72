"""The contract check: a class that is not a block is named as such before it is built."""

from __future__ import annotations

from typing import Any

import pytest

from aios_instance import BlockTester
from aios_instance.contract import check_block_class
from aios_instance.errors import ConfigError


class NoOnData:
    built = False

    def __init__(self, context: Any) -> None:
        NoOnData.built = True

    def on_preprocess(self, packet: Any) -> Any:
        return True, []


class Nothing:
    pass


def test_a_class_without_on_data_is_refused_before_it_is_built() -> None:
    with pytest.raises(ConfigError, match=r"NoOnData is not a block: it defines no on_data\."):
        BlockTester(NoOnData)
    assert not NoOnData.built


def test_every_missing_callback_is_named_with_its_signature() -> None:
    with pytest.raises(ConfigError) as caught:
        check_block_class(Nothing)
    message = str(caught.value)
    assert "defines no on_preprocess and no on_data" in message
    assert "on_preprocess(self, packet)" in message and "on_data(self, entry)" in message
