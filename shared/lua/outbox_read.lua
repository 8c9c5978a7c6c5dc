-- The oldest events of the room's outbox, for the relay (reads only). Answers two strings:
-- the entry ids and the events, each joined by a newline (an event is cjson's JSON, which
-- never holds a raw newline), so the client splits two strings instead of parsing a reply
-- of several parts per entry; then who holds the room's recovering mark ('' when nobody),
-- which the relay checks before each turn: one round trip for both. ARGV: room, count
local entries = redis.call('XRANGE', K_OUTBOX, '-', '+', 'COUNT', tonumber(ARGV[2]))
local ids, events = {}, {}
for i, entry in ipairs(entries) do
  ids[i] = entry[1]
  events[i] = entry[2][2] -- the entry's one field: e = event JSON
end
local recovering = redis.call('HGET', K_STATS, 'recovering') or ''
return { table.concat(ids, '\n'), table.concat(events, '\n'), recovering }
