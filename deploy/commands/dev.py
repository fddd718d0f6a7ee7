"""`hwledger dev up|down|status`: the embedded local stack."""

from __future__ import annotations

import argparse
import json

from rich.console import Console

from hwledger.deploy.commands import Subparsers, add_command, add_group, wait_until_stopped
from hwledger.deploy.config import Settings
from hwledger.deploy.kafka_admin import ensure_topic
from hwledger.deploy.localstack import BROKERS, LocalStack
from hwledger.schemas.db import DEFAULT_SCHEMA
from hwledger.schemas.migrations import prepare_schema
from hwledger.schemas.roles import prepare_query_role

console = Console()


def register(subparsers: Subparsers) -> None:
    dev = add_group(subparsers, "dev", "run the embedded local stack (Postgres + Kafka broker)")
    up = add_command(dev, "up", _up, "start the stack, create the topic, migrate and seed")
    up.add_argument("--broker", choices=BROKERS,
                    help="kafka (Apache Kafka, durable; needs Java 17+) or tansu (memory-only); "
                         "default HWLEDGER_BROKER, else kafka when Java 17+ is on PATH")
    up.add_argument("--brokers", type=int, default=1, metavar="N",
                    help="Apache Kafka nodes: 3 is a KRaft quorum of three, topic replication "
                         "factor 3, min.insync.replicas=2 (for fault tests; default 1)")
    up.add_argument("--detach", action="store_true", help="start in the background and return")
    up.add_argument("--pg-port", type=int, help="PostgreSQL port (default: a free one)")
    up.add_argument("--kafka-port", type=int, help="broker port (default: a free one)")
    add_command(dev, "down", _down, "stop the stack")
    add_command(dev, "status", _status, "show whether the stack runs and where")


def _up(args: argparse.Namespace, settings: Settings) -> int:
    stack = LocalStack(settings.home)
    info = stack.up(broker=args.broker or settings.broker, brokers=args.brokers,
                    pg_port=args.pg_port, kafka_port=args.kafka_port, detach=args.detach)
    try:
        ensure_topic({"bootstrap.servers": info.kafka_bootstrap}, settings.topic,
                     settings.partitions, replicas=len(info.broker_pids))
        schema = settings.db_schema or DEFAULT_SCHEMA
        prepare_schema(info.database_url, schema)
        prepare_query_role(info.database_url, schema, info.query_database_url)
    except BaseException:
        stack.down()
        raise
    print(f"PostgreSQL    HWLEDGER_DATABASE_URL={info.database_url}")
    print(f"query role    HWLEDGER_QUERY_DATABASE_URL={info.query_database_url}")
    print(f"Kafka broker  HWLEDGER_KAFKA_BOOTSTRAP={info.kafka_bootstrap}")
    console.print(f"broker        {info.broker_label()}")
    console.print(f"topic         {settings.topic} ({settings.partitions} partitions)")
    if args.detach:
        console.print("running in the background; stop with `hwledger dev down`")
        return 0
    console.print("running; Ctrl-C stops the stack")
    wait_until_stopped()
    stack.down()
    console.print("stopped")
    return 0


def _down(args: argparse.Namespace, settings: Settings) -> int:
    was_running = LocalStack(settings.home).down()
    console.print("stopped" if was_running else "nothing was running")
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    status = LocalStack(settings.home).status()
    print(json.dumps(status, indent=2))
    return 0 if all(part["running"] for part in status.values()) else 3
