-- Drop the outbox's oldest events, a delivered batch, once JetStream has acknowledged them
-- all: the relay's trim. Only by the relay that holds the room's relay lease with this
-- fence (as outbox_trim.lua). A batch is the outbox's oldest entries and entry ids only
-- grow (XADD '*'), so one XTRIM MINID past its last entry drops it, instead of an XDEL
-- naming each entry. That holds only while the outbox is the one the batch was read from:
-- a store that failed over to a replica behind it may hold other entries (made since, with
-- ids from a clock behind) before or among the batch's. So the outbox's oldest entry must
-- be the batch's first and its `count` entries must end at the batch's last; else nothing
-- is dropped and the answer is -1 (the relay then verifies the room against the stream).
-- ARGV: room, holder, fence, lease_ms, first entry id, last entry id, count. Answers how
-- many entries went, or -1.
if not hold_lease('relay', ARGV[2], ARGV[3], tonumber(ARGV[4])) then
  return fail('lease_lost')
end
local first, last, count = ARGV[5], ARGV[6], tonumber(ARGV[7])
local ms, seq = string.match(last, '^(%d+)-(%d+)$')
if not ms or not count or count < 1 then
  return fail('bad_entry_id', last)
end
local oldest = redis.call('XRANGE', K_OUTBOX, '-', '+', 'COUNT', 1)
if #oldest == 0 or oldest[1][1] ~= first then
  return -1
end
local span = redis.call('XRANGE', K_OUTBOX, first, last, 'COUNT', count + 1)
if #span ~= count or span[count][1] ~= last then
  return -1
end
-- MINID keeps ids at or above the one given: the id just after the last delivered
return redis.call('XTRIM', K_OUTBOX, 'MINID', ms .. '-' .. string.format('%d', tonumber(seq) + 1))
