"""mqtts://: the broker's certificate and host name are verified; ca_file says whom to trust.

A mosquitto with a plain listener (for the probe) and a TLS listener whose
certificate, for ``localhost``, is signed by a CA made for the test.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess

import pytest
import pytest_twisted
from e2e_support import MqttProbe, poll_until
from support import free_port
from twisted.internet import reactor, task
from twisted.logger import capturedLogs, formatEvent

from octolux.config.ini import MqttConfig
from octolux.mqtt.client import MqttService

_prefixes = itertools.count()


def openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_broker(mosquitto, tmp_path_factory):
    """(broker with a plain and a TLS listener, CA file, TLS port)."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificates (run scripts/setup-env.sh)")
    from conftest import Mosquitto

    tmp = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=octolux test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=tmp)
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
            cwd=tmp)
    (tmp / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
    )
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=tmp)

    broker = Mosquitto(mosquitto.executable, tmp)
    tls_port = free_port()
    broker.conf.write_text(
        # Started as root, mosquitto would read the key as user mosquitto, which
        # cannot enter pytest's private temporary directory.
        "user root\n"
        f"listener {broker.port} {broker.host}\nallow_anonymous true\n"
        f"listener {tls_port} {broker.host}\n"
        f"cafile {tmp / 'ca.pem'}\ncertfile {tmp / 'server.pem'}\nkeyfile {tmp / 'server.key'}\n"
    )
    broker.start()
    yield broker, str(tmp / "ca.pem"), tls_port
    broker.stop()


def service_for(host: str, port: int, ca_file: str | None, base: str) -> MqttService:
    return MqttService(
        MqttConfig(host=host, port=port, tls=True, ca_file=ca_file, client_id=f"octolux-{base}"),
        reactor=reactor,
        status_topic=f"{base}/status",
    )


@pytest_twisted.ensureDeferred
async def test_mqtts_with_the_ca_file_connects(tls_broker):
    broker, ca_file, tls_port = tls_broker
    base = f"tls-{next(_prefixes)}"
    probe = MqttProbe(broker.host, broker.port, [f"{base}/#"])
    service = service_for("localhost", tls_port, ca_file, base)
    try:
        await probe.ready(reactor)
        service.startService()
        assert (await probe.next_on(reactor, f"{base}/status")).text == "online"
        service.publish(f"{base}/hold/65", "50")
        assert (await probe.next_on(reactor, f"{base}/hold/65")).text == "50"
    finally:
        await service.stopService().addTimeout(10, reactor)
        await probe.close(reactor)


@pytest.mark.parametrize(
    ("host", "use_ca", "why"),
    [
        ("localhost", False, "certificate verify failed"),  # not signed by a system CA
        ("127.0.0.1", True, "certificate verify failed"),  # certificate is for localhost
    ],
)
@pytest_twisted.ensureDeferred
async def test_mqtts_refuses_a_certificate_it_cannot_verify(tls_broker, host, use_ca, why):
    broker, ca_file, tls_port = tls_broker
    base = f"tls-{next(_prefixes)}"
    probe = MqttProbe(broker.host, broker.port, [f"{base}/#"])
    service = service_for(host, tls_port, ca_file if use_ca else None, base)
    with capturedLogs() as events:
        try:
            await probe.ready(reactor)
            service.startService()
            lines = await poll_until(
                reactor,
                lambda: [formatEvent(e) for e in events if "Cannot reach" in formatEvent(e)],
                10, "the failure logged",
            )
            assert why in lines[0]
            # Give it a moment longer: it must never get through.
            await task.deferLater(reactor, 0.5, lambda: None)
            assert not service.connected
            assert probe.on(f"{base}/status") == []
        finally:
            await service.stopService().addTimeout(10, reactor)
            await probe.close(reactor)
