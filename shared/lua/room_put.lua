-- Create or update a room's config in one step: merge, check, write, append the event.
-- ARGV: room, new_incarnation, update_json (only the fields given, each already checked
-- on its own by shared/room.py RoomUpdate), fields_json (every config field and its
-- default; null for a field a new room must be given). Fields are in their stored form
-- (shared/room.py to_stored): times are epoch ms, 0 for none; the lanes a table, held in
-- the hash as JSON.
-- The update goes onto the stored config (a new room starts from the defaults), the result
-- must pass every rule in RULES, and only then is anything written: two partial updates at
-- once never lose each other. Answers {created, config, seq (of its room_updated event),
-- version, inc} or 'WR invalid_config <reason>'.
local update, fields = cjson.decode(ARGV[3]), cjson.decode(ARGV[4])

-- Rules across fields, checked on the merged config in this order: the reason, and what
-- must hold. Add a rule here; the per-field bounds live in shared/room.py.
local RULES = {
  { 'target_url is required to create a room',
    function(c) return c.target_url ~= nil end },
  { 'heartbeat_timeout must be longer than heartbeat_interval',
    function(c) return c.heartbeat_timeout > c.heartbeat_interval end },
  { 'max_party_size must be at most max_active',
    function(c) return c.max_party_size <= c.max_active end },
  { 'auto_release needs target_latency_ms (the site latency the pace aims for)',
    function(c) return not c.auto_release or c.target_latency_ms > 0 end },
  { 'closes_at must be later than opens_at',
    function(c) return c.opens_at == 0 or c.closes_at == 0 or c.closes_at > c.opens_at end },
}

if recovering() then
  return fail('room_recovering') -- the replay owns the room until it is rebuilt
end
local stored = load_cfg()
local config = {}
for name, default in pairs(fields) do
  local value = update[name]
  if value == nil and stored and stored[name] then
    value = stored[name]
    if type(default) == 'number' then
      value = tonumber(value) -- the hash holds strings
    elseif type(default) == 'boolean' then
      value = value == 'true'
    elseif type(default) == 'table' then
      value = cjson.decode(value)
    end
  end
  if value == nil and default ~= cjson.null then
    value = default
  end
  config[name] = value
end
-- max_party_size follows max_active down unless it is given itself (a room made small, or
-- shrunk in a hurry, keeps working); given both, they must agree
if update.max_party_size == nil then
  config.max_party_size = math.min(config.max_party_size, config.max_active)
end
for _, rule in ipairs(RULES) do
  if not rule[2](config) then
    return fail('invalid_config', rule[1])
  end
end

local created = stored == nil
local inc, version = ARGV[2], 1
if not created then
  inc, version = stored.inc, tonumber(stored.version or '0') + 1
end
redis.call('HSET', K_CFG, 'version', version, 'inc', inc, unpack(config_flat(config)))
forget_room_incarnation()
local seq = emit(inc, 'room_updated', nil,
                 { config = config, created = created, version = version, incarnation = inc },
                 now_ms())
return cjson.encode({ created = created, config = config, seq = seq, version = version,
                      inc = inc })
