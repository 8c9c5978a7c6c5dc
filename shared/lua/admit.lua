-- One admission tick for a room, by the replica holding its admission lease.
-- ARGV: room, holder, fence, lease_ms, max_batch
-- free units = max_active - used units; the release rate is a token bucket refilled by the
-- server clock: whole releases are taken and the fraction carries over, so every rate comes
-- out exact. While people wait for releases (the last tick ran out of them) the bucket
-- holds up to two seconds of releases, so late ticks (a busy worker, a lease moving) lose
-- none; otherwise (nobody waiting, no free units, paused) one release plus a quarter
-- second's, so an idle room bursts little.
local cfg, err = room_for_change()
if not cfg then
  return err
end
if not hold_lease('admission', ARGV[2], ARGV[3], tonumber(ARGV[4])) then
  return fail('lease_lost')
end
local max_batch = tonumber(ARGV[5])
local now = now_ms()
local rate = tonumber(cfg.release_rate)
local st = redis.call('HMGET', K_STATS, 'tokens', 'tokens_ts', 'used_units',
                      'rate', 'rate_ts', 'rate_since', 'tokens_short')
local burst = 1 + rate / 4
if st[7] == '1' then
  burst = 1 + rate * 2
end
local tokens = tonumber(st[1] or '1')
local last = tonumber(st[2] or now)
local used = tonumber(st[3] or '0')
tokens = math.min(burst, tokens + math.max(0, now - last) * rate / 1000)
local admitted = {}
if cfg.status == 'active' then
  local free = tonumber(cfg.max_active) - used
  local claim_ms = tonumber(cfg.claim_window) * 1000
  while #admitted < max_batch and tokens >= 1 and free > 0 do
    local position_id, p = line_head()
    if not p then
      break
    end
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
local short = cfg.status == 'active' and tokens < 1 and tonumber(cfg.max_active) > used
              and redis.call('ZCARD', K_LINE) > 0
-- Observed admission rate: an exponentially decaying count (shared/line.py reads it).
local r, rts, since = tonumber(st[4] or '0'), tonumber(st[5] or now), tonumber(st[6] or now)
r = r * math.exp(-math.max(0, now - rts) / RATE_TAU_MS) + #admitted * 1000 / RATE_TAU_MS
redis.call('HSET', K_STATS, 'tokens', string.format('%.6f', tokens), 'tokens_ts', now,
           'tokens_short', short and '1' or '0',
           'rate', string.format('%.6f', r), 'rate_ts', now, 'rate_since', since)
return cjson.encode({ admitted = admitted, used_units = used, status = cfg.status })
