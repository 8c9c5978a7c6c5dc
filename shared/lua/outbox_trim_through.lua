-- Drop the outbox's oldest events, through entry ARGV[5], once JetStream has acknowledged
-- them all: the relay's trim of a delivered batch. Only by the relay that holds the room's
-- relay lease with this fence (as outbox_trim.lua). A batch is the outbox's oldest entries
-- and entry ids only grow (XADD '*'), so "every entry up to the batch's last" is the batch:
-- one XTRIM MINID instead of an XDEL naming each entry. ARGV: room, holder, fence,
-- lease_ms, last entry id. Answers how many entries went.
if not hold_lease('relay', ARGV[2], ARGV[3], tonumber(ARGV[4])) then
  return fail('lease_lost')
end
local ms, seq = string.match(ARGV[5], '^(%d+)-(%d+)$')
if not ms then
  return fail('bad_entry_id', ARGV[5])
end
-- MINID keeps ids at or above the one given: the id just after the last delivered
return redis.call('XTRIM', K_OUTBOX, 'MINID', ms .. '-' .. string.format('%d', tonumber(seq) + 1))
