"""Every refusal the trust boundary added has its own advice, not the generic box."""

from __future__ import annotations

import pytest

from sleap_rtc_plugin.gui.dialogs.errors import _GENERIC, advice_for


@pytest.mark.parametrize("code", ["not_owner", "owner_required", "job_exists", "bad_package", "package_too_large", "rate_limited",
                                  "admin_required", "token_required", "replaced", "result_timeout", "bad_result", "disk_full"])
def test_trust_boundary_codes_have_their_own_advice(code):
    advice = advice_for(code)
    assert advice is not _GENERIC and advice.title and advice.next_step
