"""Example answers of the read routes, shown in /docs (`read_models`' `examples`) and checked
against the models by the unit tests: one H100 provider with one node and one finished run."""

from __future__ import annotations

from typing import Any

AS_OF: dict[str, Any] = {
    "schema": "hwledger", "position": 1234, "lastEventAt": "2026-12-03T10:14:58.250Z",
    "partitions": [{"projection": "inventory", "topic": "hwledger.events", "partition": 0,
                    "nextOffset": 1234}]}

SPEC: dict[str, Any] = {
    "architecture": "Hopper", "vramType": "HBM3", "memoryBusWidthBits": 5120,
    "memoryDataRateGbps": 5.23, "memoryBandwidthGbps": 3350.0, "boostClockMhz": 1980,
    "tdpW": 700, "note": None, "source": "nvidia-h100",
    "peakTflops": {"fp16": {"dense": 989.5, "sparse": 1979.0, "source": "nvidia-h100"},
                   "fp4": None},
    "sources": {"nvidia-h100": {"kind": "vendor", "title": "NVIDIA H100 Tensor Core GPU",
                                "url": "https://www.nvidia.com/en-us/data-center/h100/"}}}

HARDWARE: dict[str, Any] = {
    "systemHardwareId": "3f0c5d2e-8a51-5b8e-9d0f-6c1e2a7b4d90", "cpuModel": "AMD EPYC 9654",
    "cpuVendor": "amd", "cpuCores": 96, "cpuThreads": 192, "ramBytes": 1649267441664,
    "architecture": "amd64", "motherboard": "Supermicro H13DSG-O-CPU", "gpuCount": 1,
    "totalVramBytes": 85899345920, "cpuBaseClockMhz": None, "cpuPeakClockMhz": None,
    "memorySpeedMhz": None, "memoryChannels": None, "memoryInterleaveProfile": None,
    "barSizeMb": None,
    "gpus": [{"slotIndex": 0, "gpuHardwareId": "9b2d7e41-0c3a-5f6e-8d1b-2a4c6e8f0a13",
              "vendor": "nvidia", "model": "h100", "name": "NVIDIA H100 80GB HBM3",
              "pciVendorId": "10de", "pciDeviceId": "2330", "pciSubsystemId": None,
              "vramBytes": 85899345920, "interface": "sxm", "slotNativeInterface": "SXM5",
              "actualInterface": "SXM5", "spec": SPEC}]}

_NODE_IDS: dict[str, Any] = {
    "snapshotEventId": "0f1119b1-0ef1-53e5-a164-cfe82ccba79a",
    "systemHardwareId": HARDWARE["systemHardwareId"],
    "systemSoftwareId": "5a7e3c19-2b4d-5f60-8e1a-3c5d7f9b1e24"}

PROVIDER: dict[str, Any] = {
    "owner": "akash1provider", "hostUri": "https://provider.example.net:8443",
    "lastSeenAt": "2026-12-03T10:14:58.250Z", "createdAt": "2026-11-01T12:00:00.000Z",
    "location": "eu-central", "organization": "Example GPU Co", "reclamationWindow": 3600,
    "nodeCount": 1,
    "totals": {"cpu": 190000, "memory": 1503238553600, "gpu": 1,
               "ephemeral": 3221225472000, "persistent": 7516192768000, "leasedIp": 4},
    "maxNodeFree": {"cpu": 190000, "memory": 1503238553600, "gpu": 1},
    "gpuModels": ["nvidia", "nvidia/h100", "vendor/nvidia/model/h100/ram/80Gi/interface/sxm"],
    "gpuModelsFree": ["nvidia", "nvidia/h100",
                      "vendor/nvidia/model/h100/ram/80Gi/interface/sxm"],
    "storageClasses": ["beta3"], "attributes": {"region": "eu-central"},
    "signedAttributes": {"akash1auditor": {"tier": "premium"}},
    "auditedBy": ["akash1auditor"],
    "nodes": [{"node": "node-1", **_NODE_IDS, "firstSeenAt": "2026-11-01T12:00:00.000Z",
               "lastSeenAt": "2026-12-03T10:14:58.250Z",
               "free": {"cpuMillicores": 190000, "memoryBytes": 1503238553600,
                        "ephemeralStorageBytes": 3221225472000, "gpuSlots": [0]}}]}

RUN: dict[str, Any] = {
    "runId": "run-42", "owner": "akash1provider", "node": "node-1", "status": "succeeded",
    "startedAt": "2026-12-03T09:00:00.000Z", "finishedAt": "2026-12-03T09:29:00.500Z",
    "taskRef": "bench/llama3-70b", "modelRef": "meta-llama/Meta-Llama-3-70B",
    "snapshotEventId": _NODE_IDS["snapshotEventId"],
    "resources": {"cpuMillicores": 16000, "memoryBytes": 137438953472,
                  "ephemeralStorageBytes": 214748364800, "gpuSlots": [0]},
    "hardware": HARDWARE,
    "software": {"os": "Ubuntu 22.04.4 LTS", "kernelVersion": "5.15.0-105-generic",
                 "pythonVersion": "3.11.7", "gpuDriverVersion": "550.54.15",
                 "cudaVersion": "12.4", "rocmVersion": None, "runnerVersion": "0.1.0"},
    "metrics": {"slotIndex": None, "wallClockSeconds": 1740.5, "secondsToFirstToken": 0.42,
                "tokensPerSecond": 2310.0, "peakVramBytes": 76235669504, "powerLimitW": 700,
                "measuredTflops": 494.75, "gpuSmUtilizationPct": 87.5, "energyWh": 310.2,
                "computeFormat": "bf16", "peakTflops": 989.5, "tflopsUtilizationPct": 50.0}}

GPUS: dict[str, Any] = {
    "totals": {"installed": 8, "free": 3, "providers": 1, "providersFree": 1},
    "gpus": [{"vendor": "nvidia", "model": "h100", "ram": "80Gi", "interface": "sxm",
              "installed": 8, "free": 3, "providers": 1, "providersFree": 1}],
    "onlineSince": "2026-12-03T10:00:00.000Z", "asOf": AS_OF}

PROVIDERS: dict[str, Any] = {
    "providers": [{"owner": "akash1provider", "hostUri": "https://provider.example.net:8443",
                   "region": "eu-central", "auditedBy": ["akash1auditor"],
                   "gpuModels": ["nvidia/h100"], "freeGpus": 3,
                   "lastSeenAt": "2026-12-03T10:14:58.250Z", "staleness": "fresh"}],
    "truncated": False, "now": "2026-12-03T10:15:00.000Z",
    "onlineSince": "2026-12-03T10:00:00.000Z", "asOf": AS_OF}
