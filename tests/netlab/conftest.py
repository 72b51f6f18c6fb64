"""The network lab as a pytest fixture: one lab per test module, torn down even on failure.

``netlab`` yields a ``fixtures_netlab.Lab``: the lab's namespaces plus a real coturn
(STUN/TURN over UDP and TCP on 3478, TLS on 443) in the "internet" namespace, configured
for TURN REST credentials with ``TURN_SECRET``. Tests skip with one line where namespaces
cannot be made (not root) or coturn/openssl is not installed.
"""

from __future__ import annotations

import shutil

import pytest

from fixtures_netlab import COORDINATOR_IP, TURN_IP, Lab, leftover_namespaces, unavailable_reason, write_self_signed


@pytest.fixture(scope="module")
def netlab(tmp_path_factory):
    reason = unavailable_reason()
    for tool, package in (("turnserver", "coturn"), ("openssl", "openssl")):
        if reason is None and shutil.which(tool) is None:
            reason = f"network lab needs `{tool}` (apt-get install {package})"
    if reason:
        pytest.skip(reason)
    lab = Lab()
    lab.workdir = tmp_path_factory.mktemp("netlab")
    lab.cert, _ = write_self_signed(lab.workdir, TURN_IP, COORDINATOR_IP)
    try:
        lab.build()
        lab.start_coturn()
        yield lab
    finally:
        lab.close()
        mine = [name for name in leftover_namespaces() if name.startswith(f"srtc{lab.tag}-")]
        assert not mine, f"lab namespaces left behind: {mine}"

