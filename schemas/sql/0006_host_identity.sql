-- bakeoff's host identity inputs (HardwareSnapshotted v2): CPU base/peak clock, memory speed,
-- channels and interleave profile, BIOS BAR size. Part of system_hardware_id only when present,
-- so existing rows keep their ids and stay NULL here.
ALTER TABLE system_hardware
    ADD COLUMN cpu_base_clock_mhz integer CHECK (cpu_base_clock_mhz >= 0),
    ADD COLUMN cpu_peak_clock_mhz integer CHECK (cpu_peak_clock_mhz >= 0),
    ADD COLUMN memory_speed_mhz integer CHECK (memory_speed_mhz >= 0),
    ADD COLUMN memory_channels integer CHECK (memory_channels >= 0),
    ADD COLUMN memory_interleave_profile text,
    ADD COLUMN bar_size_mb bigint CHECK (bar_size_mb >= 0);
