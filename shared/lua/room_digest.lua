-- The parts of a room's state that define it, for a digest: config, counters, the line in
-- order, every live person, the admitted with their claim deadlines, the active with their
-- session deadlines, the per-address counts. Liveness (last heartbeat), the rate bucket
-- and the observed rate are left out: a replay starts those afresh. ARGV: room
local cfg = load_cfg()
if not cfg then
  return fail('room_not_found')
end
local counters = {}
for _, name in ipairs({ 'arrival', 'event_seq', 'used_units', 'admitted_total', 'expired_total',
                        'enqueued_total', 'completed_total', 'left_total' }) do
  counters[name] = tonumber(redis.call('HGET', K_STATS, name) or '0')
end
local people = {}
local flat = redis.call('HGETALL', K_PEOPLE)
for i = 1, #flat, 2 do
  local p = cjson.decode(flat[i + 1])
  if p.state == 'waiting' or p.state == 'admitted' or p.state == 'active' then
    people[#people + 1] = { flat[i], p.state, p.arrival, p.size, p.priority, p.ip, p.meta, p.bind,
                            p.claim_deadline or 0, p.session_deadline or 0 }
  end
end
local ips = redis.call('HGETALL', K_IPS)
return cjson.encode({
  config = cfg,
  counters = counters,
  line = redis.call('ZRANGE', K_LINE, 0, -1),
  admitted = redis.call('ZRANGE', K_ADMITTED, 0, -1, 'WITHSCORES'),
  active = redis.call('ZRANGE', K_ACTIVE, 0, -1, 'WITHSCORES'),
  people = people,
  ips = ips,
})
