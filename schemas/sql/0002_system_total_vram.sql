-- A derived column: the VRAM of all GPUs of a system configuration. Rows projected before this
-- migration keep NULL until `hwledger rebuild` replays the log and fills it for the whole
-- history (docs/operations.md, "Rebuilds").
ALTER TABLE system_hardware
    ADD COLUMN total_vram_bytes bigint CHECK (total_vram_bytes >= 0);
