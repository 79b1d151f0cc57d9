"""Points: pure rules, no I/O.

Wuhan's party-member points system (DOMAIN.md, "Points ledger"): a yearly
discipline account opens at 12 points; reminders at 9, 6, 3 and 0 remaining.
The ledger itself comes with the points issue.
"""
YEARLY_OPENING_POINTS = 12
WARNING_LADDER = ((9, "reminder"), (6, "red_warning"), (3, "yellow_alert"), (0, "handling"))


def opening_account(park_id, member_id, year):
    return {"park_id": park_id, "member_id": member_id, "year": year,
            "balance": YEARLY_OPENING_POINTS, "entries": 0}


def warning_level(balance):
    """The most severe warning the balance has reached, or None."""
    level = None
    for threshold, name in WARNING_LADDER:
        if balance <= threshold:
            level = name
    return level
