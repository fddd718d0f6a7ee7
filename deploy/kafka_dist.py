"""The Apache Kafka distribution: its pinned version, its jars resolved once by Maven, Java.

The broker, the KRaft storage tool and the command-line tools (kafka-topics) come from Maven
Central as `org.apache.kafka:kafka_2.13`, `kafka-tools` and their dependencies; `mvn
dependency:copy-dependencies` over a generated pom copies them into a cache outside the
repository (`~/.cache/hwledger/kafka-<version>/`, or `$HWLEDGER_KAFKA_CACHE`). They run with
the plain `java` on PATH (17 or newer).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from hwledger.schemas.errors import UserError

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
MIN_JAVA = 17

_ARTIFACTS = (
    ("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
    ("org.apache.kafka", "kafka-tools", KAFKA_VERSION),
    ("org.apache.logging.log4j", "log4j-slf4j2-impl", LOG4J_VERSION),
    ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
)


def java_major(version_output: str) -> int | None:
    """The major version in `java -version` output (`"17.0.15"` -> 17, `"1.8.0"` -> 8)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def java_version() -> int | None:
    """The major version of the `java` on PATH, None when there is none."""
    java = shutil.which("java")
    if java is None:
        return None
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return java_major(done.stderr + done.stdout)


def has_java() -> bool:
    """Whether a Java runtime new enough for Apache Kafka is on PATH."""
    found = java_version()
    return found is not None and found >= MIN_JAVA


def cache_dir() -> Path:
    base = os.environ.get("HWLEDGER_KAFKA_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "hwledger"
    return root / f"kafka-{KAFKA_VERSION}"


def pom() -> str:
    """A throwaway pom whose dependencies are the broker, the tools and a log4j binding."""
    deps = "".join(
        f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in _ARTIFACTS)
    return ('<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0'
            "</modelVersion><groupId>hwledger</groupId><artifactId>kafka-dist</artifactId>"
            f"<version>{KAFKA_VERSION}</version><dependencies>{deps}</dependencies></project>\n")


def classpath() -> str:
    """The jars of the pinned Kafka version, resolved with Maven on first use."""
    libs = cache_dir() / "libs"
    if not (cache_dir() / "complete").exists():
        _resolve(libs)
    return os.pathsep.join(str(p) for p in sorted(libs.glob("*.jar")))


def _resolve(libs: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise UserError("Apache Kafka needs Maven (`mvn` on PATH) to fetch its jars once; "
                        "install it or use --broker tansu")
    work = cache_dir()
    work.mkdir(parents=True, exist_ok=True)
    (work / "pom.xml").write_text(pom(), "utf-8")
    print(f"fetching Apache Kafka {KAFKA_VERSION} jars with Maven into {work} (once)...",
          file=sys.stderr, flush=True)
    log = work / "maven.log"
    with log.open("wb") as out:
        done = subprocess.run(
            [mvn, "-B", "-q", "-f", str(work / "pom.xml"), "dependency:copy-dependencies",
             f"-DoutputDirectory={libs}", "-DincludeScope=runtime"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise UserError(f"Maven could not fetch Apache Kafka {KAFKA_VERSION} (exit "
                        f"{done.returncode}); see {log}")
    (work / "complete").write_text(KAFKA_VERSION + "\n", "utf-8")
    print(f"Apache Kafka {KAFKA_VERSION}: {len(list(libs.glob('*.jar')))} jars ready",
          file=sys.stderr, flush=True)
