"""The CLI's OpenMP wait policy: spinning threads for torch-only commands, sleeping ones where numba runs too."""

import pytest

from mvgen.cli import set_wait_policy


@pytest.mark.parametrize("command, policy", [("generate", "ACTIVE"), ("train", "ACTIVE"), ("train-vae", "ACTIVE"),
                                             ("reconstruct", "PASSIVE"), ("app", "PASSIVE"), ("run", "PASSIVE"),
                                             ("bench", "PASSIVE")])
def test_policy_per_command_and_the_users_setting_wins(monkeypatch, command, policy):
    import os

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # what importing `reconstruction` sets
    set_wait_policy(command, user=None)
    assert os.environ["OMP_WAIT_POLICY"] == policy
    set_wait_policy(command, user="mine")
    assert os.environ["OMP_WAIT_POLICY"] == "mine"
