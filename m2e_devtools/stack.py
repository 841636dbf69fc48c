"""The local stack: a single-node Apache Kafka 4.x (KRaft) broker and a Redis server.

`m2e-sync stack up | down | status` drives it. The broker runs from the official
`org.apache.kafka:kafka_2.13` jars, resolved by Maven through `stack/pom.xml` into a
cache outside the repo; Redis is Debian's `redis-server`, installed when missing.
Every process it starts is recorded in a pid file under the state dir, and `down`
stops only those (a pid whose working directory is not under the state dir is left alone).

Failures raise `StackError` with a message that names what is missing; the CLI
prints it without a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.registry import all_topics
from shared.topics import TopicSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
POM = REPO_ROOT / "stack" / "pom.xml"
LOG4J_CONFIG = REPO_ROOT / "stack" / "log4j2.properties"
MIN_JAVA = 17
Echo = Callable[[str], None]


class StackError(Exception):
    """The stack cannot be brought to the asked state; the message says why."""


class StackSettings(BaseSettings):
    """Where and how the local stack runs (env prefix `M2E_STACK_`)."""

    model_config = SettingsConfigDict(env_prefix="M2E_STACK_")

    dir: Path = Field(default=Path.home() / ".cache" / "m2e-sync" / "stack")
    cache_dir: Path = Field(default=Path.home() / ".cache" / "m2e-sync")
    host: str = "127.0.0.1"
    kafka_port: int = Field(default=9092, ge=1, le=65535)
    controller_port: int = Field(default=9093, ge=1, le=65535)
    redis_port: int = Field(default=6379, ge=1, le=65535)
    partitions: int = Field(default=4, ge=1, le=1000)
    kafka_heap: str = Field(default="512m", pattern=r"^\d+[kmg]$")
    start_timeout_s: float = Field(default=90.0, gt=0)

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.host}:{self.redis_port}/0"


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    pid: int | None
    address: str

    @property
    def running(self) -> bool:
        return self.pid is not None


# --------------------------------------------------------------------------- prerequisites


def java_major_version(version_output: str) -> int:
    """Parse `java -version` output: '"17.0.15"' → 17, '"1.8.0_392"' → 8."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        raise StackError(f"could not read the Java version from: {version_output.strip()!r}")
    major = int(match.group(1))
    if major == 1 and match.group(2):
        return int(match.group(2))
    return major


def ensure_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError(
            f"Java {MIN_JAVA}+ is required to run Kafka and none was found on PATH "
            "(Debian: apt-get install openjdk-17-jre-headless)"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    major = java_major_version(out.stderr or out.stdout)
    if major < MIN_JAVA:
        raise StackError(f"Java {MIN_JAVA}+ is required to run Kafka 4.x; found Java {major}")
    return java


def ensure_debian_package(binary: str, package: str) -> str:
    """Return the path of `binary`, installing Debian's `package` first when missing."""
    found = shutil.which(binary)
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise StackError(
            f"{binary} is missing and cannot be installed here (needs root and apt-get); "
            f"install the Debian package {package}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "-qq", package]
    if subprocess.run(install, capture_output=True, env=env, check=False).returncode != 0:
        subprocess.run([apt, "update", "-qq"], capture_output=True, env=env, check=False)
        done = subprocess.run(install, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise StackError(
                f"apt-get could not install {package} (exit {done.returncode}): "
                f"{_tail(done.stderr)}"
            )
    found = shutil.which(binary)
    if not found:
        raise StackError(f"installed {package} but {binary} is still not on PATH")
    return found


def ensure_kafka_jars(settings: StackSettings) -> Path:
    """Resolve the Kafka runtime from Maven Central into the cache; reuse it when present."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    libdir = settings.cache_dir / f"kafka-jars-{digest}"
    if (libdir / ".complete").exists():
        return libdir
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            "Maven (mvn) is required to resolve the Kafka jars from Maven Central "
            "(Debian: apt-get install maven)"
        )
    staging = libdir.with_name(libdir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        raise StackError(
            "Maven could not resolve org.apache.kafka:kafka_2.13 from Maven Central "
            f"(exit {done.returncode}): {_tail(done.stdout + done.stderr)}"
        )
    shutil.rmtree(libdir, ignore_errors=True)
    staging.rename(libdir)
    (libdir / ".complete").write_text(POM.read_text())
    return libdir


# --------------------------------------------------------------------------- processes


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _pid_file(settings: StackSettings, name: str) -> Path:
    return settings.dir / f"{name}.pid"


def _owned_pid(settings: StackSettings, name: str) -> int | None:
    """The pid of our running `name` process, or None (stale pid files are removed)."""
    path = _pid_file(settings, name)
    try:
        pid = int(path.read_text().strip())
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except (OSError, ValueError):
        path.unlink(missing_ok=True)
        return None
    # A recycled pid belongs to someone else: ours always run inside the state dir
    # (redis rewrites its process title, so the command line cannot tell).
    if not cwd.is_relative_to(settings.dir.resolve()) or not _alive(pid):
        path.unlink(missing_ok=True)
        return None
    return pid


def _spawn(settings: StackSettings, name: str, argv: Sequence[str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=settings.dir,
        )
    _pid_file(settings, name).write_text(str(proc.pid))
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of this process is dead for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # not our child: nothing to reap
        os.waitpid(pid, os.WNOHANG)


def _stop(
    settings: StackSettings, name: str, timeout_s: float = 30.0, *, hard: bool = False
) -> bool:
    """SIGTERM (then SIGKILL after `timeout_s`), or SIGKILL at once when `hard`."""
    pid = _owned_pid(settings, name)
    if pid is None:
        return False
    if not hard:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            _reap(pid)
            time.sleep(0.05)
    _pid_file(settings, name).unlink(missing_ok=True)
    return True


def _wait_for_port(settings: StackSettings, name: str, pid: int, port: int, log: Path) -> None:
    deadline = time.monotonic() + settings.start_timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            _reap(pid)
            _pid_file(settings, name).unlink(missing_ok=True)
            raise StackError(f"{name} exited during start-up; last log lines:\n{_tail(_read(log))}")
        if port_in_use(settings.host, port):
            return
        time.sleep(0.2)
    raise StackError(
        f"{name} did not open {settings.host}:{port} within {settings.start_timeout_s}s"
    )


def _check_port_free(settings: StackSettings, port: int, setting: str) -> None:
    if port_in_use(settings.host, port):
        raise StackError(
            f"port {port} on {settings.host} is in use by a process this stack did not start; "
            f"stop it or choose another port with {setting}"
        )


# --------------------------------------------------------------------------- kafka


def kafka_properties(settings: StackSettings) -> str:
    host, data = settings.host, settings.dir / "kafka" / "data"
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers={host}:{settings.controller_port}",
            f"listeners=PLAINTEXT://{host}:{settings.kafka_port},"
            f"CONTROLLER://{host}:{settings.controller_port}",
            f"advertised.listeners=PLAINTEXT://{host}:{settings.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={data}",
            f"num.partitions={settings.partitions}",
            "auto.create.topics.enable=false",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=10",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=10",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "",
        ]
    )


def _kafka_cluster_id() -> str:
    # Kafka's Uuid text form: URL-safe base64 of 16 bytes, unpadded. Like Kafka's
    # Uuid.randomUuid, never start with "-": the storage tool's argument parser
    # would read such an id as an option (1 run in 64 failed CI that way).
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _java_argv(settings: StackSettings, libdir: Path, main: str, *args: str) -> list[str]:
    return [
        ensure_java(),
        f"-Xmx{settings.kafka_heap}",
        f"-Xms{settings.kafka_heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        f"-Dkafka.log.file={settings.dir / 'kafka' / 'server.log'}",
        "-cp",
        f"{libdir}/*",
        main,
        *args,
    ]


def start_kafka(settings: StackSettings, libdir: Path) -> tuple[int, bool]:
    pid = _owned_pid(settings, "kafka")
    if pid is not None:
        return pid, False
    _check_port_free(settings, settings.kafka_port, "M2E_STACK_KAFKA_PORT")
    _check_port_free(settings, settings.controller_port, "M2E_STACK_CONTROLLER_PORT")
    home = settings.dir / "kafka"
    home.mkdir(parents=True, exist_ok=True)
    props = home / "server.properties"
    props.write_text(kafka_properties(settings))
    if not (home / "data" / "meta.properties").exists():
        argv = _java_argv(
            settings,
            libdir,
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            f"--cluster-id={_kafka_cluster_id()}",
            "-c",
            str(props),
        )
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise StackError(
                f"formatting the KRaft log dir failed: {_tail(done.stdout + done.stderr)}"
            )
    log = home / "stdout.log"
    pid = _spawn(settings, "kafka", _java_argv(settings, libdir, "kafka.Kafka", str(props)), log)
    _wait_for_port(settings, "kafka", pid, settings.kafka_port, home / "server.log")
    return pid, True


async def _await_metadata_and_create_topics(
    settings: StackSettings, topics: Sequence[TopicSpec]
) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError

    deadline = time.monotonic() + settings.start_timeout_s
    while True:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=5000
        )
        try:
            await admin.start()  # sends a MetadataRequest: the broker answers or this fails
            existing = set(await admin.list_topics())
            break
        except (KafkaError, OSError) as exc:
            await admin.close()
            if time.monotonic() > deadline:
                raise StackError(
                    f"Kafka at {settings.bootstrap_servers} did not answer a metadata request: {exc}"
                ) from exc
            await asyncio.sleep(0.5)
    try:
        missing = [t for t in topics if t.name not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(
                        t.name,
                        num_partitions=settings.partitions,
                        replication_factor=1,
                        topic_configs={"cleanup.policy": "compact"} if t.compacted else {},
                    )
                    for t in missing
                ]
            )
        return [t.name for t in missing]
    finally:
        await admin.close()


# --------------------------------------------------------------------------- redis


def start_redis(settings: StackSettings) -> tuple[int, bool]:
    pid = _owned_pid(settings, "redis")
    if pid is not None:
        return pid, False
    server = ensure_debian_package("redis-server", "redis-server")
    _check_port_free(settings, settings.redis_port, "M2E_STACK_REDIS_PORT")
    home = settings.dir / "redis"
    home.mkdir(parents=True, exist_ok=True)
    argv = [
        server,
        "--bind",
        settings.host,
        "--port",
        str(settings.redis_port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
        str(home),
        "--logfile",
        str(home / "redis.log"),
    ]
    pid = _spawn(settings, "redis", argv, home / "stdout.log")
    _wait_for_port(settings, "redis", pid, settings.redis_port, home / "redis.log")
    return pid, True


# --------------------------------------------------------------------------- commands


def up(settings: StackSettings, *, fresh: bool = False, echo: Echo = print) -> None:
    """Start what is not running, then make sure every topic exists. Safe to repeat."""
    settings.dir.mkdir(parents=True, exist_ok=True)
    if fresh:
        down(settings, echo=echo)
        shutil.rmtree(settings.dir / "kafka", ignore_errors=True)
    ensure_java()
    libdir = ensure_kafka_jars(settings)
    ensure_debian_package("kcat", "kcat")  # the tests and operators use it
    ensure_debian_package("promtool", "prometheus")  # the tests check the alert rules with it
    pid, started = start_kafka(settings, libdir)
    echo(
        f"kafka  {'started' if started else 'already running'} (pid {pid}) "
        f"at {settings.bootstrap_servers}"
    )
    pid, started = start_redis(settings)
    echo(
        f"redis  {'started' if started else 'already running'} (pid {pid}) at {settings.redis_url}"
    )
    created = asyncio.run(_await_metadata_and_create_topics(settings, all_topics()))
    echo(
        f"topics {len(all_topics())} present ({len(created)} created, "
        f"{settings.partitions} partitions each)"
    )
    echo(
        f"export KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers} REDIS_URL={settings.redis_url}"
    )


def down(settings: StackSettings, *, echo: Echo = print) -> None:
    for name in ("redis", "kafka"):
        echo(f"{name:6} {'stopped' if _stop(settings, name) else 'was not running'}")


def kill(settings: StackSettings, name: str) -> bool:
    """SIGKILL our `name` process (kafka or redis), as a crash would: for fault injection."""
    return _stop(settings, name, hard=True)


def restart(settings: StackSettings, name: str, *, hard: bool = False) -> int:
    """Stop `name` (SIGTERM, or SIGKILL when hard) and start it again on the same data;
    returns the new pid once it answers."""
    _stop(settings, name, hard=hard)
    if name == "kafka":
        pid, _ = start_kafka(settings, ensure_kafka_jars(settings))
    elif name == "redis":
        pid, _ = start_redis(settings)
    else:
        raise StackError(f"no stack component {name!r}")
    return pid


def running(settings: StackSettings, name: str) -> bool:
    """Whether our `name` process (kafka or redis) runs."""
    return _owned_pid(settings, name) is not None


def status(settings: StackSettings) -> list[Component]:
    return [
        Component("kafka", _owned_pid(settings, "kafka"), settings.bootstrap_servers),
        Component("redis", _owned_pid(settings, "redis"), settings.redis_url),
    ]


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
