"""Names the README documented before the layout moved still work for one release, each
with a DeprecationWarning that says the new name."""

from __future__ import annotations

import importlib
import sys
from dataclasses import fields

import pytest


def test_onnx_sise_preparation_is_an_alias_of_model_preparation() -> None:
    from onnx_sise.model import preparation

    sys.modules.pop("onnx_sise.preparation", None)
    with pytest.warns(DeprecationWarning, match="moved to onnx_sise.model.preparation"):
        alias = importlib.import_module("onnx_sise.preparation")
    assert alias.prepare_onnx is preparation.prepare_onnx and alias.InputOverrides is preparation.InputOverrides


def test_method_options_lists_every_option_with_its_default() -> None:
    from onnx_sise import methods

    with pytest.warns(DeprecationWarning, match="each method has its own options record"):
        record = methods.MethodOptions
    assert {f.name: f.default for f in fields(record)} == {n: f.default for n, f in methods.option_fields().items()}
    assert record(mu=0.5).mu == 0.5
