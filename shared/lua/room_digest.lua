-- The parts of a room's state that define it, for a digest: config, counters, the line in
-- order, every live person, the admitted with their claim deadlines, the active with their
-- session deadlines, the per-address counts, and the policies' state: units seated per
-- lane, the pre-queue in its draw and the opening's progress, the invites and their uses.
-- Liveness (last heartbeat, session keep-alives), the rate bucket
-- and the observed rate are left out: a replay starts those afresh. ARGV: room
local cfg, err = room_for_read()
if not cfg then
  return err
end
cfg.lanes = room_lanes(cfg) -- a table: its JSON's key order is no part of the state
local counters = {}
for _, name in ipairs({ 'arrival', 'event_seq', 'used_units', 'admitted_total', 'expired_total',
                        'enqueued_total', 'completed_total', 'left_total' }) do
  counters[name] = tonumber(redis.call('HGET', K_STATS, name) or '0')
end
counters.pace = tonumber(redis.call('HGET', K_STATS, 'pace') or '-1') -- -1: the site not followed
local stats = redis.call('HGETALL', K_STATS)
for i = 1, #stats, 2 do
  if string.sub(stats[i], 1, 10) == 'lane_used:' and tonumber(stats[i + 1]) ~= 0 then
    counters[stats[i]] = tonumber(stats[i + 1])
  end
end
local people = {}
local flat = redis.call('HGETALL', K_PEOPLE)
for i = 1, #flat, 2 do
  local p = decode_person(flat[i + 1])
  if p.state == 'waiting' or p.state == 'admitted' or p.state == 'active' then
    people[#people + 1] = { flat[i], p.state, p.arrival, p.size, p.priority, p.ip, p.meta, p.bind,
                            p.claim_deadline or 0, p.session_deadline or 0, p.lane or '',
                            p.seat or '', p.skips or 0 }
  end
end
local invites = {}
local stored = redis.call('HGETALL', K_INVITES)
for i = 1, #stored, 2 do
  local inv = cjson.decode(stored[i + 1])
  invites[#invites + 1] = { stored[i], inv.priority, inv.uses, inv.used, inv.expires_at,
                            inv.revoked and 1 or 0 }
end
local ips = redis.call('HGETALL', K_IPS)
return cjson.encode({
  config = cfg,
  counters = counters,
  line = redis.call('ZRANGE', K_LINE, 0, -1),
  prequeue = redis.call('ZRANGE', K_PREQUEUE, 0, -1),
  draw = redis.call('HMGET', K_STATS, 'draw_seed', 'prequeue_last', 'open_base', 'open_rank'),
  admitted = redis.call('ZRANGE', K_ADMITTED, 0, -1, 'WITHSCORES'),
  active = redis.call('ZRANGE', K_ACTIVE, 0, -1, 'WITHSCORES'),
  people = people,
  invites = invites,
  ips = ips,
})
