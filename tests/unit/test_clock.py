"""The one clock: UTC to the millisecond, as MongoDB keeps a time."""
from datetime import timezone

from lamplight import clock


def test_now_is_utc_to_the_millisecond_and_its_text_ends_in_z():
    now = clock.utcnow()
    assert now.tzinfo is not None and now.utcoffset().total_seconds() == 0
    assert now.microsecond % 1000 == 0
    text = clock.iso(now)
    assert text.endswith("Z") and len(text.split(".")[1]) == 4  # three digits and the Z
    assert clock.iso(now.astimezone(timezone.utc)) == text
