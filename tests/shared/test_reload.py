"""Credentials reloaded live (shared.reload): a Secret volume's `..data` swap is seen, the
process's one Credentials object changes for every reader, a bad file keeps the last good
credentials, and every new token is masked in the logs from the moment it is read."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from shared.config import load_settings
from shared.logs import setup_logging
from shared.m2e.credentials import Change
from shared.metrics import Metrics
from shared.reload import CredentialsReloader
from tests.secret_volume import SecretVolume

A, B, C = "acct-a", "acct-b", "acct-c"


def reloader(
    tmp_path: Path, volume: SecretVolume
) -> tuple[CredentialsReloader, list[Change], Metrics]:
    settings = load_settings(m2e_credentials_file=volume.path, credentials_reload_s=1)
    metrics = Metrics("variant-sync")
    seen: list[Change] = []
    r = CredentialsReloader(
        settings, settings.credentials(), metrics, "variant-sync", [seen.append]
    )
    return r, seen, metrics


def started(tmp_path: Path) -> tuple[SecretVolume, CredentialsReloader, list[Change], Metrics]:
    """A Secret volume holding account A's first token, and a reloader watching it."""
    volume = SecretVolume(tmp_path / "secret")
    volume.write({A: "token-a-one"})
    return (volume, *reloader(tmp_path, volume))


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, {"service": "variant-sync", **labels})
    return 0.0 if value is None else value


def test_a_swap_of_the_volume_rotates_adds_and_removes(tmp_path: Path) -> None:
    volume = SecretVolume(tmp_path / "secret")
    volume.write({A: "token-a-one", B: "token-b-one"})
    r, seen, metrics = reloader(tmp_path, volume)
    credentials = r._credentials
    assert r.check() is None  # unchanged

    volume.write({A: "token-a-two", C: "token-c-one"})
    change = r.check()
    assert change == Change(added=frozenset({C}), removed=frozenset({B}), rotated=frozenset({A}))
    assert seen == [change]
    assert credentials.lookup(A)[0] == "token-a-two"  # the object every reader holds
    assert B not in credentials and C in credentials
    assert sample(metrics, "m2e_sync_accounts_configured") == 2
    assert sample(metrics, "m2e_sync_credential_reloads_total", result="ok") == 1


def test_a_bad_file_keeps_the_last_good_credentials_and_says_why_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    volume, r, seen, metrics = started(tmp_path)
    volume.write_text(f"{A}: token-a-two\n  broken: [\n")
    with caplog.at_level(logging.ERROR, "m2e_sync.credentials"):
        assert r.check() is None
        assert r.check() is None
    assert r._credentials.lookup(A)[0] == "token-a-one"
    [record] = caplog.records
    assert "line" in record.getMessage() and "keeping the last good" in record.getMessage()
    assert "token-a-two" not in record.getMessage()
    assert sample(metrics, "m2e_sync_credential_reloads_total", result="refused") == 1
    volume.write({A: "token-a-three"})  # fixed: applied
    assert r.check() == Change(rotated=frozenset({A}))
    assert seen and r._credentials.lookup(A)[0] == "token-a-three"


def test_a_file_gone_keeps_the_last_good_credentials(tmp_path: Path) -> None:
    volume, r, _, metrics = started(tmp_path)
    volume.path.unlink()
    assert r.check() is None
    assert r._credentials.lookup(A)[0] == "token-a-one"
    assert sample(metrics, "m2e_sync_credential_reloads_total", result="refused") == 1


def test_a_new_token_is_masked_in_the_logs_once_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    volume, r, _, _ = started(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    setup_logging("INFO", r._settings.secrets())
    try:
        volume.write({A: "rotated-secret-9f8e"})
        r.check()
        logging.getLogger("m2e_sync.test").error("sent with rotated-secret-9f8e")
        err = capsys.readouterr().err
        assert "rotated-secret-9f8e" not in err and "***" in err
    finally:
        root.handlers[:], root.level = handlers, level


def test_reloading_is_off_without_a_file_or_at_zero(tmp_path: Path) -> None:
    settings = load_settings(m2e_access_tokens='{"acct-a": "token-a-one"}')
    r = CredentialsReloader(settings, settings.credentials(), Metrics("x"), "x")
    assert not r.enabled and r.check() is None
    volume = SecretVolume(tmp_path / "secret")
    volume.write({A: "token-a-one"})
    settings = load_settings(m2e_credentials_file=volume.path, credentials_reload_s=0)
    assert not CredentialsReloader(settings, settings.credentials(), Metrics("x"), "x").enabled


def test_the_same_problem_after_a_fix_is_logged_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    volume, r, _, _ = started(tmp_path)
    with caplog.at_level(logging.ERROR, "m2e_sync.credentials"):
        volume.write_text("[broken\n")
        r.check()
        volume.write({A: "token-a-one"})  # back to what is in force
        assert r.check() is None
        volume.write_text("[broken\n")
        r.check()
    assert len(caplog.records) == 2
