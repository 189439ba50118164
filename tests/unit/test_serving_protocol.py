"""KServe V1 / Open Inference Protocol parsing, validation and response shapes (pure functions)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from roost.serving import protocol

NUMERIC = {
    "inputs": [
        {"name": "a", "type": "numeric", "datatype": "FP64"},
        {"name": "b", "type": "numeric", "datatype": "FP64"},
        {"name": "c", "type": "numeric", "datatype": "FP64"},
    ],
    "outputs": {"task": "classification", "classes": [0, 1], "datatype": "INT64"},
    "target": "y",
}
MIXED = {
    "inputs": [
        {"name": "x", "type": "numeric", "datatype": "FP64"},
        {"name": "n", "type": "numeric", "datatype": "INT64"},
        {"name": "color", "type": "categorical", "datatype": "BYTES"},
        {"name": "flag", "type": "boolean", "datatype": "BOOL"},
    ],
    "outputs": {"task": "classification", "classes": ["no", "yes"], "datatype": "BYTES"},
    "target": "y",
}
REGRESSION = {
    "inputs": [{"name": "a", "type": "numeric", "datatype": "FP64"}],
    "outputs": {"task": "regression", "datatype": "FP64"},
    "target": "y",
}


@pytest.fixture(scope="module")
def numeric() -> protocol.Signature:
    return protocol.Signature.from_dict(NUMERIC)


@pytest.fixture(scope="module")
def mixed() -> protocol.Signature:
    return protocol.Signature.from_dict(MIXED)


def tensor(name: str, data: Any, datatype: str = "FP64", shape: list[int] | None = None) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape or [len(data)], "data": data}


# ----- signature ---------------------------------------------------------------------------------
def test_signature_reads_inputs_in_order_and_outputs(mixed: protocol.Signature) -> None:
    assert mixed.names == ("x", "n", "color", "flag")
    assert list(mixed.columns) == ["x", "n", "color", "flag"]
    assert mixed.is_classifier and mixed.classes == ("no", "yes") and mixed.output_datatype == "BYTES"
    assert [i.nullable for i in mixed.inputs] == [False, False, True, True]
    assert mixed.output_names(has_proba=True) == ("predict", "predict_proba")
    assert protocol.Signature.from_dict(REGRESSION).output_names(has_proba=True) == ("predict",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"inputs": []}, "non-empty"),
        ({"inputs": [{"name": "a", "type": "text", "datatype": "FP64"}]}, "type 'text'"),
        ({"inputs": [{"name": "a", "type": "numeric", "datatype": "FP32"}]}, "datatype 'FP32'"),
        ({"inputs": [{"name": "a"}, {"name": "a"}]}, "duplicate"),
        ({"outputs": {"task": "ranking"}}, "task"),
        ({"outputs": {"task": "classification"}}, "classes"),
    ],
    ids=["no-inputs", "bad-type", "bad-datatype", "duplicates", "bad-task", "no-classes"],
)
def test_signature_rejects_malformed(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        protocol.Signature.from_dict({**NUMERIC, **change})


# ----- KServe V1 ---------------------------------------------------------------------------------
def test_v1_list_rows_become_a_float_frame_in_signature_order(numeric: protocol.Signature) -> None:
    parsed = protocol.parse_v1_request({"instances": [[1, 2.5, 3], [4, 5, 6]]}, numeric)
    assert list(parsed.frame.columns) == ["a", "b", "c"]
    assert parsed.frame.dtypes.tolist() == [np.float64] * 3
    assert parsed.frame.to_numpy().tolist() == [[1, 2.5, 3], [4, 5, 6]]
    assert parsed.rows == 2 and not parsed.probabilities


def test_v1_object_rows_are_reordered_by_signature(numeric: protocol.Signature) -> None:
    parsed = protocol.parse_v1_request({"instances": [{"c": 3, "a": 1, "b": 2}]}, numeric)
    assert parsed.frame.to_numpy().tolist() == [[1, 2, 3]]


def test_v1_probabilities_by_verb_or_parameter(numeric: protocol.Signature) -> None:
    body = {"instances": [[1, 2, 3]]}
    assert protocol.parse_v1_request(body, numeric, proba_verb=True).probabilities
    assert protocol.parse_v1_request({**body, "parameters": {"probabilities": True}}, numeric).probabilities


def test_v1_mixed_types_keep_their_dtypes_and_categorical_nulls(mixed: protocol.Signature) -> None:
    rows = [[1.5, 2, "red", True], [2, 3.0, None, False]]
    frame = protocol.parse_v1_request({"instances": rows}, mixed).frame
    assert frame["x"].dtype == np.float64 and frame["n"].dtype == np.int64
    assert frame["flag"].dtype == bool
    assert frame["color"].iloc[0] == "red" and pd.isna(frame["color"].iloc[1])
    assert frame["n"].tolist() == [2, 3]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1, 2], "JSON object"),
        ({"inputs": [[1, 2, 3]]}, "'instances' list"),
        ({"instances": []}, "empty"),
        ({"instances": [[1, 2]]}, r"instances\[0\] must be a list of 3 values"),
        ({"instances": [[1, 2, 3], [1, 2]]}, r"instances\[1\]"),
        ({"instances": ["abc"]}, r"instances\[0\]"),
        ({"instances": [[1, "x", 3]]}, "input 'b': expected numbers .* 'x'"),
        ({"instances": [[1, 2, True]]}, "input 'c': expected numbers"),
        ({"instances": [[1, None, 3]]}, "input 'b': null/NaN at row 0 is not allowed"),
        ({"instances": [[1, 2, 3], [1, 2, None]]}, "input 'c': null/NaN at row 1"),
        ({"instances": [[1, [2], 3]]}, "input 'b'"),
        ({"instances": [{"a": 1, "b": 2}]}, "missing input 'c'"),
        ({"instances": [{"a": 1, "b": 2, "c": 3, "d": 4}]}, "unknown input 'd'"),
        ({"instances": [{"a": 1, "b": 2, "c": 3}, [1, 2, 3]]}, r"instances\[1\] must be an object"),
        ({"instances": [[1, 2, 3]], "parameters": 5}, "parameters"),
    ],
    ids=[
        "not-object",
        "no-instances",
        "empty",
        "short-row",
        "ragged",
        "string-row",
        "string-value",
        "bool-value",
        "null",
        "null-later-row",
        "nested",
        "missing-key",
        "unknown-key",
        "mixed-rows",
        "bad-parameters",
    ],
)
def test_v1_rejects_bad_requests_naming_the_problem(
    numeric: protocol.Signature, body: Any, message: str
) -> None:
    with pytest.raises(protocol.ProtocolError, match=message) as caught:
        protocol.parse_v1_request(body, numeric)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([1.5, 2.5, "red", True], "input 'n': expected integers"),
        ([1.5, 2, 3, True], "input 'color': expected strings"),
        ([1.5, 2, "red", 1], "input 'flag': expected booleans"),
        (["1.5", 2, "red", True], "input 'x': expected numbers"),
    ],
    ids=["float-for-int", "number-for-string", "int-for-bool", "string-for-float"],
)
def test_v1_mixed_signature_checks_each_datatype(
    mixed: protocol.Signature, row: list[Any], message: str
) -> None:
    with pytest.raises(protocol.ProtocolError, match=message):
        protocol.parse_v1_request({"instances": [row]}, mixed)


# ----- Open Inference Protocol ---------------------------------------------------------------------
def test_v2_one_tensor_per_input_with_shape_n_or_n1(numeric: protocol.Signature) -> None:
    body = {
        "id": "r1",
        "inputs": [
            tensor("b", [2, 20], "INT32"),
            tensor("a", [[1.0], [10.0]], "FP32", [2, 1]),
            tensor("c", [3, 30], "FP64"),
        ],
    }
    parsed = protocol.parse_v2_request(body, numeric)
    assert parsed.id == "r1"
    assert parsed.frame.to_numpy().tolist() == [[1, 2, 3], [10, 20, 30]]
    assert parsed.outputs == ("predict", "predict_proba")


@pytest.mark.parametrize("nested", [True, False], ids=["nested", "flat"])
def test_v2_one_matrix_tensor_n_by_f(numeric: protocol.Signature, nested: bool) -> None:
    rows = [[1, 2, 3], [4, 5, 6]]
    data = rows if nested else [v for r in rows for v in r]
    body = {"inputs": [tensor("input-0", data, "FP64", [2, 3])], "outputs": [{"name": "predict_proba"}]}
    parsed = protocol.parse_v2_request(body, numeric)
    assert parsed.frame.to_numpy().tolist() == rows
    assert parsed.outputs == ("predict_proba",) and parsed.id is None


def test_v2_mixed_signature_per_input_tensors(mixed: protocol.Signature) -> None:
    body = {
        "inputs": [
            tensor("x", [0.5, 1.5]),
            tensor("n", [1.0, 2.0], "FP64"),  # integral floats are accepted for an INT64 input
            tensor("color", ["red", "blue"], "BYTES"),
            tensor("flag", [True, False], "BOOL"),
        ]
    }
    frame = protocol.parse_v2_request(body, mixed).frame
    assert frame["n"].dtype == np.int64 and frame["flag"].dtype == bool
    assert frame["color"].tolist() == ["red", "blue"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": []}, "non-empty 'inputs'"),
        ({"id": 5, "inputs": [tensor("a", [1])]}, "'id' must be a string"),
        ({"inputs": [tensor("a", [1]), tensor("b", [2])]}, "missing input 'c'"),
        (
            {"inputs": [tensor("a", [1]), tensor("b", [2]), tensor("c", [3]), tensor("d", [4])]},
            "unknown input 'd'",
        ),
        ({"inputs": [tensor("a", [1]), tensor("a", [1]), tensor("c", [3])]}, "input 'a' given twice"),
        ({"inputs": [tensor("a", [1], "FLOAT"), tensor("b", [2]), tensor("c", [3])]}, "datatype 'FLOAT'"),
        (
            {"inputs": [tensor("a", ["x"], "BYTES"), tensor("b", [2]), tensor("c", [3])]},
            "input 'a': datatype BYTES does not match the signature",
        ),
        (
            {"inputs": [tensor("a", [True], "BOOL"), tensor("b", [2]), tensor("c", [3])]},
            "input 'a': datatype BOOL",
        ),
        (
            {"inputs": [tensor("a", [1, 2], shape=[3]), tensor("b", [2]), tensor("c", [3])]},
            r"input 'a': data has 2 values but shape \[3\] needs 3",
        ),
        ({"inputs": [tensor("a", [1, 2]), tensor("b", [2]), tensor("c", [3])]}, "input 'b' has 1 rows"),
        (
            {"inputs": [tensor("a", [1, 2], shape=[1, 2]), tensor("b", [2]), tensor("c", [3])]},
            r"shape must be \[N\] or \[N, 1\]",
        ),
        ({"inputs": [tensor("a", [None]), tensor("b", [2]), tensor("c", [3])]}, "input 'a': null/NaN"),
        ({"inputs": [tensor("a", ["x"]), tensor("b", [2]), tensor("c", [3])]}, "input 'a': expected numbers"),
        ({"inputs": [tensor("a", [1.5], "INT64"), tensor("b", [2]), tensor("c", [3])]}, "non-integer"),
        ({"inputs": [{"name": "a", "datatype": "FP64", "shape": [1]}]}, "'data' must be a list"),
        ({"inputs": [{"name": "a", "datatype": "FP64", "shape": "1", "data": [1]}]}, "shape must be a list"),
        ({"inputs": [tensor("m", [1, 2, 3, 4], shape=[2, 2])]}, r"\[N, 3\] tensor"),
        ({"inputs": [tensor("m", [[1, 2, 3], [4, 5]], shape=[2, 3])]}, "input 'm'"),
        (
            {"inputs": [tensor("m", [1, 2, 3], shape=[1, 3])], "outputs": [{"name": "score"}]},
            "unknown output 'score'",
        ),
        ({"inputs": [tensor("m", [], shape=[0, 3])]}, "no rows"),
    ],
    ids=[
        "no-inputs",
        "id-type",
        "missing",
        "unknown",
        "duplicate",
        "unknown-datatype",
        "bytes-for-numeric",
        "bool-for-numeric",
        "length-vs-shape",
        "row-count",
        "wide-feature",
        "null",
        "string-data",
        "non-integer-int",
        "no-data",
        "shape-type",
        "matrix-width",
        "ragged-matrix",
        "unknown-output",
        "empty",
    ],
)
def test_v2_rejects_bad_requests_naming_the_problem(
    numeric: protocol.Signature, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(protocol.ProtocolError, match=message) as caught:
        protocol.parse_v2_request(body, numeric)
    assert caught.value.status == 400


def test_v2_predict_proba_is_not_offered_without_probabilities(numeric: protocol.Signature) -> None:
    body = {"inputs": [tensor("m", [1, 2, 3], shape=[1, 3])], "outputs": [{"name": "predict_proba"}]}
    with pytest.raises(protocol.ProtocolError, match="unknown output 'predict_proba'"):
        protocol.parse_v2_request(body, numeric, has_proba=False)


# ----- responses and metadata ------------------------------------------------------------------------
def test_v2_response_has_shapes_datatypes_and_row_major_probabilities(mixed: protocol.Signature) -> None:
    labels = np.array(["yes", "no"], dtype=object)
    proba = np.array([[0.25, 0.75], [0.9, 0.1]])
    body = protocol.build_v2_response("m", "m-v1", "r1", mixed, {"predict": labels, "predict_proba": proba})
    assert {k: body[k] for k in ("model_name", "model_version", "id")} == {
        "model_name": "m",
        "model_version": "m-v1",
        "id": "r1",
    }
    predict, probabilities = body["outputs"]
    assert predict == {"name": "predict", "datatype": "BYTES", "shape": [2], "data": ["yes", "no"]}
    assert probabilities["datatype"] == "FP64" and probabilities["shape"] == [2, 2]
    assert list(probabilities["data"]) == [0.25, 0.75, 0.9, 0.1]


def test_v1_response_shapes() -> None:
    labels, proba = np.array([1, 0]), np.array([[0.2, 0.8], [0.6, 0.4]])
    assert protocol.build_v1_response(labels, None)["predictions"].tolist() == [1, 0]
    both = protocol.build_v1_response(labels, proba)
    assert both["probabilities"].tolist() == proba.tolist()
    assert protocol.build_v1_response(None, proba, proba_verb=True)["predictions"].tolist() == proba.tolist()


def test_model_metadata_lists_every_input_and_the_outputs(mixed: protocol.Signature) -> None:
    meta = protocol.model_metadata("m", "m-v1", mixed, has_proba=True)
    assert meta["name"] == "m" and meta["versions"] == ["m-v1"] and meta["platform"] == "sklearn"
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        ("x", "FP64", [-1]),
        ("n", "INT64", [-1]),
        ("color", "BYTES", [-1]),
        ("flag", "BOOL", [-1]),
    ]
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "BYTES", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]},
    ]
    regression = protocol.model_metadata("m", "v", protocol.Signature.from_dict(REGRESSION), has_proba=False)
    assert regression["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]


def test_error_statuses_for_not_found_and_too_large() -> None:
    assert protocol.not_found("x", "y").status == 404
    error = protocol.too_large(10)
    assert error.status == 413 and "10 bytes" in error.message
