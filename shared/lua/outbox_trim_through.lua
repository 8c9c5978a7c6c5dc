-- Drop the outbox's oldest events, a delivered batch, once JetStream has acknowledged them
-- all: the relay's trim. Only by the relay that holds the room's relay lease with this
-- fence (as outbox_trim.lua). A batch is the outbox's oldest entries and entry ids only
-- grow (XADD '*'), so one XTRIM MINID past its last entry drops it, instead of an XDEL
-- naming each entry. That holds only while the outbox is the one the batch was read from.
-- A store that failed over to a replica behind it holds the history up to some entry, then
-- entries of its own, made since with a clock behind: their ids may be older than the
-- batch's or the very ids the batch had (with other events). So the outbox's oldest entry
-- must be the batch's first, the batch's `count` entries must end at its last, and that
-- last entry must hold the event the relay delivered (a replica that holds it holds all
-- the history before it); else nothing is dropped and the answer is -1 (the relay then
-- verifies the room against the stream). A batch already gone (a trim run again after its
-- answer was lost) answers 0.
-- ARGV: room, holder, fence, lease_ms, first entry id, last entry id, count, last event.
-- Answers how many entries went, 0 or -1.
if not hold_lease('relay', ARGV[2], ARGV[3], tonumber(ARGV[4])) then
  return fail('lease_lost')
end
local first, last, count, last_event = ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8]
local ms, seq = string.match(last, '^(%d+)-(%d+)$')
if not ms or not count or count < 1 or not string.match(first, '^%d+-%d+$') then
  return fail('bad_entry_id', last)
end
local span = redis.call('XRANGE', K_OUTBOX, first, last, 'COUNT', count + 1)
if #span == 0 then
  local oldest = redis.call('XRANGE', K_OUTBOX, '-', '+', 'COUNT', 1)
  local after = redis.call('XRANGE', K_OUTBOX, '(' .. last, '+', 'COUNT', 1)
  if #oldest == 0 or (#after == 1 and oldest[1][1] == after[1][1]) then
    return 0 -- nothing at or before the batch's last entry: already dropped
  end
  return -1
end
local oldest = redis.call('XRANGE', K_OUTBOX, '-', '+', 'COUNT', 1)
if oldest[1][1] ~= first or #span ~= count or span[count][1] ~= last
    or span[count][2][2] ~= last_event then
  return -1
end
-- MINID keeps ids at or above the one given: the id just after the last delivered
return redis.call('XTRIM', K_OUTBOX, 'MINID', ms .. '-' .. string.format('%d', tonumber(seq) + 1))
