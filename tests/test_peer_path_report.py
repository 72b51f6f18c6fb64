"""Every link says which ICE pair it took and which bulk path its transfers used."""

from __future__ import annotations

from fixtures_peer import make_file, open_pair
from sleap_rtc_plugin.peer.path_report import PathReport


async def test_link_reports_host_pair_and_bulk_path(tmp_path, caplog):
    caplog.set_level("INFO", logger="sleap_rtc_plugin.peer.path_report")
    client, worker = await open_pair(secret=b"s" * 16)
    try:
        for link in (client, worker):
            assert link.path is not None and link.path.kind == "host"
            assert (link.path.local_type, link.path.relay_transport) == ("host", None)
        assert any("path host" in r.getMessage() for r in caplog.records)
        await worker.accept_files(tmp_path / "rx")
        sent = await client.send_file(make_file(tmp_path / "f.bin", 200_000))
        await worker.receive_file(timeout=30)
        assert client.path.bulk == [sent.via] == worker.path.bulk
        assert f"bulk: {sent.via}" in client.path.summary()
    finally:
        await client.close()
        await worker.close()


def test_relay_report_says_why_not_a_better_path():
    report = PathReport("relay", "srflx", "203.0.113.2:5000", "198.51.100.6:4000", relay_transport="tcp", turn_server="203.0.113.2:3478")
    assert report.kind == "relay"
    assert "TURN" in report.why and "drops UDP" in report.why
    assert report.as_dict()["kind"] == "relay" and "via TURN tcp" in report.summary()
    assert PathReport("host", "prflx", "a", "b").kind == "srflx"
