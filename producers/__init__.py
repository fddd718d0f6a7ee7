"""The runner side: hardware probe, publisher with a durable spool, runner library, agent.

`probe` builds this host's HardwareSnapshotted (host facts from `host_facts`, NVML behind
`nvml.Nvml`, other GPUs from /sys, overrides from `probe_options`),
`publisher.Publisher` spools events on disk and delivers them to Kafka, `runner.Runner` is the
library a runner process uses, `agent.run_agent` the long-running snapshot loop.
"""
