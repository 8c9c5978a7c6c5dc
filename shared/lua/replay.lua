-- Apply events read back from the stream to a room, in order, making the change each
-- original script made, without appending to the outbox (the events are in the stream).
-- Events at or below the room's event counter are skipped, so a replay run twice changes
-- nothing the second time. ARGV: room, now_ms (liveness starts afresh then), event_json...
-- Answers how many events were applied.
local now = tonumber(ARGV[2])

local function apply(e)
  local seq = tonumber(e.seq)
  if seq <= tonumber(redis.call('HGET', K_STATS, 'event_seq') or '0') then
    return 0
  end
  local t = e.type
  local at = math.floor(e.ts * 1000 + 0.5)
  local position_id = e.position_id
  if t == 'room_updated' then
    local flat = {}
    for name, value in pairs(e.config) do
      flat[#flat + 1] = name
      flat[#flat + 1] = tostring(value)
    end
    local inc = e.incarnation or string.match(e.id, '^.+:(.-):%d+$')
    redis.call('HSET', K_CFG, 'version', e.version, 'inc', inc, 'recovering', '1', unpack(flat))
  elseif t == 'room_deleted' then
    wipe_room(string.match(e.id, '^.+:(.-):%d+$'))
  elseif t == 'pace_changed' then
    if e.auto_release then
      redis.call('HSET', K_STATS, 'pace', tostring(e.pace))
    else
      redis.call('HDEL', K_STATS, 'pace')
    end
  elseif t == 'enqueued' then
    local p = { state = 'waiting', arrival = e.arrival, size = e.size, priority = e.priority,
                ip = e.ip_hash or '', joined = at, meta = e.metadata or '', bind = e.bind or '',
                inc = e.incarnation or string.match(e.id, '^.+:(.-):%d+$') }
    join_line(position_id, p, now)
  else
    local p = get_person(position_id)
    if not p then
      return fail('replay_gap', 'event ' .. e.id .. ' names a place the store does not know')
    end
    if t == 'admitted' then
      mark_admitted(position_id, p, at, e.claim_deadline)
    elseif t == 'activated' then
      mark_active(position_id, p, at, e.session_deadline)
    elseif t == 'completed' then
      finish(position_id, p, 'completed', 'completed', at)
    elseif t == 'left' then
      finish(position_id, p, 'left', 'left', at)
    elseif t == 'expired' then
      finish(position_id, p, 'expired', e.reason, at)
    else
      return fail('replay_unknown_type', 'event type ' .. tostring(t))
    end
  end
  redis.call('HSET', K_STATS, 'event_seq', seq)
  return 1
end

local applied = 0
for i = 3, #ARGV do
  local done = apply(cjson.decode(ARGV[i]))
  if type(done) == 'table' then
    return done -- an error reply: stop here, the events before it are applied
  end
  applied = applied + done
end
return applied
