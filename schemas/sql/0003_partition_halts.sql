-- A partition the projector stopped because its log no longer holds the stored offset (a lost
-- or truncated log, docs/operations.md "Poison records and a lost log"): the reason, until
-- `hwledger offsets reset` clears it. `hwledger status` shows it as an alarm.
ALTER TABLE projection_offsets ADD COLUMN halted_reason text;
