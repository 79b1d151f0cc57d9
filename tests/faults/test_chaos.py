"""A small schedule of the chaos suite (bench/chaos.py, ``./dev chaos``) in
every test run: under a steady load, a killed service, a broker restart and a
killed and restarted database lose no acknowledged need, write none twice or for a key the
client never saw answered, leave no routed need without its task nor an
offer without its notice, dead-letter nothing, and the platform reaches
steady state by itself (queues empty, outbox backlog 0, every /readyz 200)
within the bound the README states (catching up within it under the load
after the last fault, and empty within it once the load stops), with no
answer of the gateway a 5xx but 503; the points postings made beside the
needs are each written once, and every balance is the sum of its entries
under a clean hash chain."""
from bench import chaos


def test_a_small_chaos_schedule_loses_and_duplicates_nothing_and_settles_by_itself(capsys):
    code = chaos.main(["--rate", "4", "--gap", "15", "--faults", "kill-volunteers,broker-restart,db-kill",
                       "--settle", str(chaos.SETTLE_BOUND_S)])
    report = capsys.readouterr().out
    assert code == 0, report
