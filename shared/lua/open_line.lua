-- Open the line once opens_at has passed: the pre-queue is shuffled into it (see
-- open_prequeue) with a seed recorded on the stream, so a replay draws the same order and
-- `waitroom audit` can check it. By the replica holding the room's admission lease; the
-- admit script holds admissions back until this has run.
-- ARGV: room, holder, fence, lease_ms, seed. Answers how many were placed (0: not due).
local cfg, err = room_for_change()
if not cfg then
  return err
end
if not hold_lease('admission', ARGV[2], ARGV[3], tonumber(ARGV[4])) then
  return fail('lease_lost')
end
local now = now_ms()
if not prequeue_due(cfg, now) then
  return 0
end
local seed = ARGV[5]
local count, order = open_prequeue(seed)
emit(cfg.inc, 'line_opened', nil, { seed = seed, count = count, order = order }, now)
return count
