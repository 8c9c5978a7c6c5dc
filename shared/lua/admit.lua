-- One admission tick for a room, by the replica holding its admission lease.
-- ARGV: room, holder, fence, lease_ms, max_batch, seed, pace (the release rate the worker's
-- pace controller allows now, for a room whose pace follows the site; '' for release_rate)
-- free units = max_active - used units; the release rate is a token bucket refilled by the
-- server clock: whole releases are taken and the fraction carries over, so every rate comes
-- out exact. While people wait for releases (the last tick ran out of them) the bucket
-- holds up to two seconds of releases, so late ticks (a busy worker, a lease moving) lose
-- none; otherwise (nobody waiting, no free units, paused) one release plus a quarter
-- second's, so an idle room bursts little.
--
-- Who goes is the room's policy. queueing_method fifo (and passthrough and reject, whose
-- line is what is left over at the door) takes the line in order; random draws lots among
-- the highest priority waiting (`seed` comes from the caller, fresh each tick). With
-- admission_policy strict a party that does not fit waits at the head of its lane (of the
-- line, when it is the room's total it waits for); with best_fit smaller parties behind
-- it go, but once someone has been passed over max_skips times nobody behind them goes
-- until they have. A party that can never fit the room as configured holds nobody up.
-- The look-ahead is bounded: a tick reads at most LOOKAHEAD places from the head of the
-- line (or makes at most LOOKAHEAD draws), so it costs O(LOOKAHEAD + admitted * log N)
-- whatever the length of the line.
-- A pre-queue due to open goes first: nobody is admitted until open_line.lua has placed
-- it, and the answer says `opening`.
local LOOKAHEAD = 64
local cfg, err = room_for_holder('admission')
if not cfg then
  return err
end
local max_batch = tonumber(ARGV[5])
local seed = ARGV[6] or ''
local now = now_ms()
local rate = math.min(tonumber(cfg.release_rate), tonumber(ARGV[7]) or math.huge)
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
local opening = prequeue_due(cfg, now)

-- The selection -----------------------------------------------------------------------
local cap = capacity(cfg, used)
local claim_ms = tonumber(cfg.claim_window) * 1000
local best_fit = cfg.admission_policy == 'best_fit'

local function more()
  return #admitted < max_batch and tokens >= 1 and cap.total > 0
end

local function admit(position_id, p, seat, passed)
  mark_admitted(position_id, p, now, now + claim_ms, seat)
  take_seat(cap, seat, p.size)
  used = used + p.size
  tokens = tokens - 1
  emit(cfg.inc, 'admitted', position_id, { claim_deadline = p.claim_deadline, size = p.size,
                                           arrival = p.arrival, lane = p.seat, passed = passed },
       now)
  admitted[#admitted + 1] = position_id
end

-- The line in order, from its head. `passed` collects, under best_fit, the parties ahead
-- that did not fit: each one someone behind them takes their units from is passed over
-- once more (their `skips`, written back at the end; the admitted event names them).
local passed = {}
local function scan()
  local max_skips = tonumber(cfg.max_skips or '3')
  local held = {} -- strict: lanes (or 'any') held up by a party ahead that does not fit
  -- true when nobody behind this party may go this tick
  local function consider(position_id, p)
    local seat, short = seat_for(cap, p.lane or '', p.size)
    local group = p.lane or 'any'
    if seat and best_fit then
      local over = nil
      for _, ahead in ipairs(passed) do
        local _, why = seat_for(cap, ahead.p.lane or '', ahead.p.size)
        if competes(cap, ahead.p, why, seat) then
          if (ahead.p.skips or 0) >= max_skips then
            return true -- passed over often enough: everyone behind them waits
          end
          over = over or {}
          over[#over + 1] = ahead
        end
      end
      local names = nil
      for _, ahead in ipairs(over or {}) do
        ahead.p.skips = (ahead.p.skips or 0) + 1
        ahead.changed = true
        names = names or {}
        names[#names + 1] = ahead.id
      end
      admit(position_id, p, seat, names)
    elseif seat then
      -- strict: nobody behind takes units a party ahead waits for: not of its lane, not
      -- the lane it would be seated in, and none while a party that takes any lane waits
      if not (held[group] or held[seat] or held.any) then
        admit(position_id, p, seat, nil)
      end
    elseif short ~= 'never' then
      if best_fit then
        passed[#passed + 1] = { id = position_id, p = p }
      elseif short == 'total' then
        return true -- the room's total is what they wait for: the head of the line waits
      else
        held[group] = true
      end
    end
    return false
  end
  -- the window is the parties left waiting ahead (at most LOOKAHEAD); the admitted leave
  -- the line, so it slides on while people go, and a tick admits up to max_batch
  local kept = 0
  while kept < LOOKAHEAD and more() do
    local page = redis.call('ZRANGE', K_LINE, kept, kept + LOOKAHEAD - 1)
    if #page == 0 then
      return
    end
    for _, position_id in ipairs(page) do
      if not more() or kept >= LOOKAHEAD then
        return
      end
      local p = line_person(position_id)
      if p then
        if consider(position_id, p) then
          return
        end
        if redis.call('ZSCORE', K_LINE, position_id) then
          kept = kept + 1
        end
      end
    end
  end
end

-- Lots, drawn among the highest priority waiting: one draw per admission; a drawn party
-- that does not fit waits (strict: the tick ends) or another is drawn (best_fit).
local function draw()
  for n = 1, LOOKAHEAD do
    if not more() then
      return
    end
    local head = redis.call('ZRANGE', K_LINE, 0, 0, 'WITHSCORES')
    if #head == 0 then
      return
    end
    local band = math.floor(tonumber(head[2]) / PRIORITY_SPAN)
    local count = redis.call('ZCOUNT', K_LINE, string.format('%.0f', band * PRIORITY_SPAN),
                             '(' .. string.format('%.0f', (band + 1) * PRIORITY_SPAN))
    local pick = tonumber(string.sub(redis.sha1hex(seed .. ':' .. n), 1, 12), 16) % count
    local position_id = redis.call('ZRANGE', K_LINE, pick, pick)[1]
    local p = line_person(position_id)
    if p then
      local seat, short = seat_for(cap, p.lane or '', p.size)
      if seat then
        admit(position_id, p, seat, nil)
      elseif short ~= 'never' and not best_fit then
        return
      end
    end
  end
end

if cfg.status == 'active' and not opening then
  if cfg.queueing_method == 'random' then
    draw()
  else
    scan()
  end
  for _, ahead in ipairs(passed) do
    if ahead.changed then
      put_person(ahead.id, ahead.p)
    end
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
return cjson.encode({ admitted = admitted, used_units = used, status = cfg.status,
                      opening = opening })
