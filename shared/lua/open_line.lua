-- Open the line once opens_at has passed: the pre-queue goes into it in the order of its
-- draw (see draw_score), at most `batch` people per call, so a pre-queue of any size never
-- holds the data store for long. The first call records the start (`line_opened`, with the
-- draw's seed), each call what it placed (`prequeue_placed`), so a replay places the same
-- people in the same slots and `waitroom audit` can check the draw. By the replica holding
-- the room's admission lease; the admit script holds admissions back until it is done.
-- ARGV: room, holder, fence, lease_ms, batch. Answers how many still wait to be placed
-- (0: done, or nothing was due).
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
if not redis.call('HGET', K_STATS, 'open_base') then
  local seed, count, base = start_opening()
  emit(cfg.inc, 'line_opened', nil, { seed = seed, count = count, base = base }, now)
end
local placed, order = place_prequeue(tonumber(ARGV[5]))
emit(cfg.inc, 'prequeue_placed', nil, { placed = placed, order = order }, now)
return redis.call('ZCARD', K_PREQUEUE)
