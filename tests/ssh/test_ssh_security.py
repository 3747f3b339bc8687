"""Host keys (unknown, changed, trust on first use), secrets kept out of logs and errors, key auth, legacy."""

from __future__ import annotations

import logging
from pathlib import Path

import asyncssh
import pytest
from structlog.testing import capture_logs

from callipso_agent.config.models import SshCredential
from callipso_agent.config.secrets import Secret
from callipso_agent.errors import AuthFailed, HostKeyError, Unreachable
from callipso_agent.lab.ssh_emulator import EmulatedUser, start_emulator
from callipso_agent.transports.ssh import SshSession, SshTarget
from tests.ssh.support import FIXTURES, profile, session_for, target_for, trusted

SPEC = profile("otms").platform.session_spec()


async def test_unknown_host_key_is_refused(tmp_path: Path) -> None:
    emu = await start_emulator("otms", fixtures_dir=FIXTURES)
    try:
        kh = tmp_path / "known_hosts"  # does not exist
        async with SshSession(target_for(emu, kh), SPEC) as s:
            with pytest.raises(HostKeyError) as exc:
                await s.run("hostname")
        msg = str(exc.value)
        assert "unknown" in msg and f"[127.0.0.1]:{emu.port}" in msg and emu.host_key_fingerprint in msg
        assert not kh.exists()
        assert emu.commands_seen == []
    finally:
        await emu.close()


async def test_host_key_of_another_host_does_not_count(tmp_path: Path) -> None:
    emu = await start_emulator("otms", fixtures_dir=FIXTURES)
    try:
        kh = tmp_path / "known_hosts"
        kh.write_text(f"[127.0.0.1]:{emu.port + 1} {emu.host_key_public}\n")
        async with SshSession(target_for(emu, kh), SPEC) as s:
            with pytest.raises(HostKeyError, match="unknown"):
                await s.run("hostname")
    finally:
        await emu.close()


async def test_trust_on_first_use_only_when_configured(tmp_path: Path) -> None:
    emu = await start_emulator("otms", fixtures_dir=FIXTURES)
    try:
        kh = tmp_path / "state" / "known_hosts"
        with capture_logs() as logs:
            async with SshSession(target_for(emu, kh, trust_on_first_use=True), SPEC) as s:
                res = await s.run("hostname")
        assert res.output.strip() == "otms-hd13-1"
        assert kh.read_text() == emu.known_hosts_line  # appended in OpenSSH form
        assert any(
            e["event"] == "ssh_host_key_trusted_on_first_use" and e["fingerprint"] == emu.host_key_fingerprint
            for e in logs
        )
        # once recorded, a session without TOFU accepts it, and nothing more is appended
        async with SshSession(target_for(emu, kh), SPEC) as s:
            assert (await s.run("hostname")).output.strip() == "otms-hd13-1"
        assert kh.read_text() == emu.known_hosts_line
    finally:
        await emu.close()


@pytest.mark.parametrize("tofu", [False, True])
async def test_changed_host_key_is_refused_even_with_tofu(tmp_path: Path, tofu: bool) -> None:
    emu = await start_emulator("otms", fixtures_dir=FIXTURES)
    try:
        kh = trusted(emu, tmp_path)
        old = emu.host_key_fingerprint
        emu.set_fault("changed_host_key")
        assert emu.host_key_fingerprint != old
        async with SshSession(target_for(emu, kh, trust_on_first_use=tofu), SPEC) as s:
            with pytest.raises(HostKeyError) as exc:
                await s.run("hostname")
        msg = str(exc.value)
        assert "CHANGED" in msg and emu.host_key_fingerprint in msg and old in msg
        assert f"[127.0.0.1]:{emu.port}" in msg
        assert kh.read_text().count("\n") == 1  # nothing appended
        emu.set_fault(None)  # back to the original key: accepted again
        async with SshSession(target_for(emu, kh), SPEC) as s:
            assert (await s.run("hostname")).output.strip() == "otms-hd13-1"
    finally:
        await emu.close()


async def test_changed_key_of_another_type_is_reported_as_changed(tmp_path: Path) -> None:
    rsa = asyncssh.generate_private_key("ssh-rsa", key_size=2048)
    emu = await start_emulator("otms", fixtures_dir=FIXTURES)
    try:
        kh = trusted(emu, tmp_path)  # ed25519
        await emu.close()
        emu2 = await start_emulator("otms", fixtures_dir=FIXTURES, host_key=rsa, port=emu.port)
        try:
            async with SshSession(target_for(emu2, kh), SPEC) as s:
                with pytest.raises(HostKeyError, match="CHANGED"):
                    await s.run("hostname")
        finally:
            await emu2.close()
    finally:
        await emu.close()


PASSWORD = "S3cr3t-Do-Not-Leak!"


async def test_password_never_in_logs_errors_or_reprs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # asyncssh's own (stdlib) logging too
    emu = await start_emulator(
        "oxe", fixtures_dir=FIXTURES, users=[EmulatedUser(username="mtcl", password=PASSWORD)]
    )
    try:
        prof = profile("oxe")
        kh = trusted(emu, tmp_path)
        (tmp_path / "oxe.pw").write_text(PASSWORD + "\n")
        cred = SshCredential.model_validate(
            {"type": "ssh", "username": "mtcl", "password": {"file": "oxe.pw"}}
        )
        target = SshTarget.from_credential(
            "oxe-hd13", emu.host, emu.port, cred, default_known_hosts=kh, base_dir=tmp_path
        )
        assert target.password is not None and target.password.reveal() == PASSWORD
        texts = [repr(target), str(target), repr(cred)]
        with capture_logs() as logs:
            emu.set_fault("wrong_password")  # the device refuses it: the error path must not leak either
            async with SshSession(target, prof.platform.session_spec()) as s:
                texts.append(repr(s))
                with pytest.raises(AuthFailed) as exc:
                    await s.run("role")
                texts += [str(exc.value), repr(exc.value), str(exc.value.__cause__)]
                emu.set_fault(None)
                s2 = SshSession(target, prof.platform.session_spec())
                assert "MAIN" in (await s2.run("role")).output
                emu.set_fault("drop")
                with pytest.raises(Unreachable) as exc2:
                    await s2.run("listerm")
                texts += [str(exc2.value), repr(s2)]
                await s2.close()
        assert logs, "the transport logs its events"
        texts += [repr(e) for e in logs]
        texts += [r.getMessage() for r in caplog.records]
        assert any(r.name.startswith("asyncssh") for r in caplog.records)
        for text in texts:
            assert PASSWORD not in text
        assert "Secret('***')" in repr(target)
    finally:
        await emu.close()


async def test_key_file_authentication(tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_file = tmp_path / "id_ed25519"
    key.write_private_key(str(key_file), passphrase="kp")  # type: ignore[arg-type]
    public = key.export_public_key("openssh").decode()
    emu = await start_emulator("otms", fixtures_dir=FIXTURES, authorized_keys=[public])
    try:
        kh = trusted(emu, tmp_path)
        t = SshTarget(
            device="otms",
            host=emu.host,
            port=emu.port,
            username=emu.username,
            known_hosts=kh,
            key_file=key_file,
            passphrase=Secret("kp"),
        )
        async with SshSession(t, SPEC) as s:
            assert (await s.run("hostname")).output.strip() == "otms-hd13-1"
        other = asyncssh.generate_private_key("ssh-ed25519")
        other_file = tmp_path / "other"
        other.write_private_key(str(other_file))
        t2 = SshTarget(
            device="otms",
            host=emu.host,
            port=emu.port,
            username=emu.username,
            known_hosts=kh,
            key_file=other_file,
        )
        async with SshSession(t2, SPEC) as s:
            with pytest.raises(AuthFailed):
                await s.run("hostname")
        t3 = SshTarget(
            device="otms",
            host=emu.host,
            port=emu.port,
            username=emu.username,
            known_hosts=kh,
            key_file=tmp_path / "missing",
        )
        async with SshSession(t3, SPEC) as s:
            with pytest.raises(AuthFailed, match="key file"):
                await s.run("hostname")
    finally:
        await emu.close()


@pytest.mark.filterwarnings("ignore:Diffie-Hellman over finite fields")
async def test_legacy_algorithms_only_when_asked(tmp_path: Path) -> None:
    emu = await start_emulator("oxe", fixtures_dir=FIXTURES, legacy_algorithms=True)
    try:
        prof = profile("oxe")
        kh = trusted(emu, tmp_path)
        async with session_for(emu, prof, kh) as s:
            with pytest.raises(Unreachable) as exc:
                await s.run("role")
        assert "legacy_algorithms" in str(exc.value)
        async with session_for(emu, prof, kh, legacy_algorithms=True) as s:
            assert "MAIN" in (await s.run("role")).output
    finally:
        await emu.close()


async def test_nothing_listening_is_unreachable(tmp_path: Path) -> None:
    emu = await start_emulator("otms", fixtures_dir=FIXTURES)
    port = emu.port
    await emu.close()
    t = SshTarget(
        device="gone",
        host="127.0.0.1",
        port=port,
        username="x",
        known_hosts=tmp_path / "kh",
        password=Secret("x"),
    )
    async with SshSession(t, SPEC) as s:
        with pytest.raises(Unreachable) as exc:
            await s.run("hostname")
    assert "gone" in str(exc.value) and str(port) in str(exc.value)
