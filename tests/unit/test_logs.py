import io
import json

import structlog

from lamplight import logs


def test_mask_string_masks_mobile_and_id_numbers():
    text = "电话13812345678，身份证32070219900101123X，订单号 1234"
    masked = logs.mask_string(text)
    assert "13812345678" not in masked and "138****5678" in masked
    assert "32070219900101123X" not in masked and "320702********123X" in masked
    assert "1234" in masked


def test_pii_keys_are_masked_at_any_depth():
    out = logs.mask_value("data", {"requester": {"name": "李四"}, "phone": "13900001111",
                                   "items": [{"name": "王五"}], "category": "daily_life"})
    assert out["requester"] == logs.MASK
    assert out["phone"] == logs.MASK
    assert out["items"][0]["name"] == logs.MASK
    assert out["category"] == "daily_life"


def test_json_lines_carry_service_park_event_and_trace(capsys):
    stream = io.StringIO()
    logs.configure("needs", stream=stream)
    structlog.contextvars.bind_contextvars(park_id="quanlinan", event_id="evt_1", trace_id="t" * 32)
    try:
        logs.get_logger().info("need.submitted", phone="13812345678", note="call 13812345678")
    finally:
        structlog.contextvars.clear_contextvars()
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["service"] == "needs"
    assert line["park_id"] == "quanlinan"
    assert line["event_id"] == "evt_1"
    assert line["trace_id"] == "t" * 32
    assert line["event"] == "need.submitted"
    assert line["phone"] == logs.MASK
    assert "13812345678" not in stream.getvalue()
