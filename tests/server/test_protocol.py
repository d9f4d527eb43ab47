import json

import numpy as np
import pytest

from server.protocol import ProtocolError, encode_infer, parse_deadline_header, parse_infer

SHAPE = (3, 4, 4)
KW = {"input_name": "input", "sample_shape": SHAPE, "dtype": "float32", "max_samples": 8}


def body(n=2, datatype="FP32", shape=None, data=None, **top):
    x = np.arange(n * 48, dtype=np.float32)
    req = {"inputs": [{"name": "input", "shape": shape or [n, *SHAPE], "datatype": datatype,
                       "data": x.tolist() if data is None else data}]}
    req.update(top)
    return json.dumps(req).encode(), x


def reason(raw, hdr=None, **kw):
    with pytest.raises(ProtocolError) as e:
        parse_infer(raw, hdr, **{**KW, **kw})
    return e.value.status, e.value.reason


def test_json_tensor_bytes_are_exact():
    raw, x = body()
    inp = parse_infer(raw, None, **KW)
    assert inp.n == 2 and not inp.binary_output
    assert np.array_equal(np.frombuffer(inp.data, np.float32), x)


def test_binary_extension_is_a_view_of_the_body():
    x = np.random.default_rng(0).normal(size=(3, *SHAPE)).astype(np.float32)
    head = json.dumps({"inputs": [{"name": "input", "shape": [3, *SHAPE], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True, "timeout": 5000}}).encode()
    raw = head + x.tobytes()
    inp = parse_infer(raw, str(len(head)), **KW)
    assert inp.binary_output and inp.timeout_us == 5000
    assert inp.data.obj is raw   # no copy
    assert np.array_equal(np.frombuffer(inp.data, np.float32).reshape(x.shape), x)


@pytest.mark.parametrize("raw,needle", [
    (b"{not json", "malformed JSON"),
    (b"[]", "JSON object"),
    (json.dumps({"inputs": []}).encode(), "exactly one tensor"),
    (body(datatype="FP16")[0], "datatype 'FP16'"),
    (body(shape=[2, 3, 4, 5])[0], "does not match"),
    (body(shape=[9, *SHAPE], data=[0.0] * 9 * 48)[0], "between 1 and 8"),
    (body(data=[1.0, 2.0])[0], "holds 2 values"),
    (body(data=["a"] * 96)[0], "not a FP32 tensor"),
    (body(parameters={"timeout": -3})[0], "timeout"),
])
def test_bad_requests_get_specific_reasons(raw, needle):
    status, why = reason(raw)
    assert status == 400 and needle in why


def test_binary_size_mismatch_is_refused():
    head = json.dumps({"inputs": [{"name": "input", "shape": [1, *SHAPE], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 192}}]}).encode()
    assert "needs 192" in reason(head + b"\0" * 100, str(len(head)))[1]
    assert "not an integer" in reason(head, "x")[1]


@pytest.mark.parametrize("v", ["-1", "0", "nan", "inf", "soon"])
def test_bad_deadline_header(v):
    with pytest.raises(ProtocolError) as e:
        parse_deadline_header(v)
    assert e.value.status == 400 and "X-Deadline-Ms" in e.value.reason


def test_encode_json_and_binary_round_trip():
    raw, _ = body(n=1, id="abc")
    logits = np.array([[0.1, 2.0, -1.0]], np.float32)
    out, hdr = encode_infer("default", parse_infer(raw, None, **KW), logits, {"subnet": "s"})
    r = json.loads(out)
    assert r["id"] == "abc" and r["outputs"][1]["data"] == [1]
    assert np.allclose(r["outputs"][0]["data"], logits.ravel())
    raw, _ = body(n=1, parameters={"binary_data_output": True})
    out, hdr = encode_infer("default", parse_infer(raw, None, **KW), logits, {})
    n = int(hdr["Inference-Header-Content-Length"])
    assert np.array_equal(np.frombuffer(out[n:n + 12], np.float32), logits.ravel())
