-- One admission tick for a room, by the replica holding its admission lease.
-- ARGV: room, holder, fence, lease_ms, max_batch, pace (the release rate the worker's pace
-- controller allows now, for a room whose pace follows the site; '' for release_rate)
-- free units = max_active - used units; the release rate is a token bucket refilled by the
-- server clock, holding at most a quarter second of releases, so 10/s releases smoothly.
local cfg, err = room_for_change()
if not cfg then
  return err
end
if not hold_lease('admission', ARGV[2], ARGV[3], tonumber(ARGV[4])) then
  return fail('lease_lost')
end
local max_batch = tonumber(ARGV[5])
local now = now_ms()
local rate = math.min(tonumber(cfg.release_rate), tonumber(ARGV[6]) or math.huge)
local burst = math.max(1, rate / 4)
local st = redis.call('HMGET', K_STATS, 'tokens', 'tokens_ts', 'used_units',
                      'rate', 'rate_ts', 'rate_since')
local tokens = tonumber(st[1] or burst)
local last = tonumber(st[2] or now)
local used = tonumber(st[3] or '0')
tokens = math.min(burst, tokens + math.max(0, now - last) * rate / 1000)
local admitted = {}
if cfg.status == 'active' then
  local free = tonumber(cfg.max_active) - used
  local claim_ms = tonumber(cfg.claim_window) * 1000
  while #admitted < max_batch and tokens >= 1 and free > 0 do
    local head = redis.call('ZRANGE', K_LINE, 0, 0)
    if #head == 0 then
      break
    end
    local position_id = head[1]
    local p = get_person(position_id)
    if p.size > free then
      break -- strict order: a party that does not fit yet waits at the head
    end
    mark_admitted(position_id, p, now, now + claim_ms)
    used = used + p.size
    free = free - p.size
    tokens = tokens - 1
    emit(cfg.inc, 'admitted', position_id, { claim_deadline = p.claim_deadline, size = p.size,
                                     arrival = p.arrival }, now)
    admitted[#admitted + 1] = position_id
  end
end
-- Observed admission rate: an exponentially decaying count (shared/line.py reads it).
local r, rts, since = tonumber(st[4] or '0'), tonumber(st[5] or now), tonumber(st[6] or now)
r = r * math.exp(-math.max(0, now - rts) / RATE_TAU_MS) + #admitted * 1000 / RATE_TAU_MS
redis.call('HSET', K_STATS, 'tokens', string.format('%.6f', tokens), 'tokens_ts', now,
           'rate', string.format('%.6f', r), 'rate_ts', now, 'rate_since', since)
return cjson.encode({ admitted = admitted, used_units = used, status = cfg.status })
