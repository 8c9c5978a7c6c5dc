-- Create or update a room's config, compare-and-set on its version so concurrent partial
-- updates never lose each other. ARGV: room, expected_version ('' = must not exist),
-- new_incarnation, config_json (every field, already merged and validated)
local current = redis.call('HGET', K_CFG, 'version')
if (current or '') ~= ARGV[2] then
  return fail('conflict')
end
local created = current == false
local inc = ARGV[3]
if not created then
  inc = redis.call('HGET', K_CFG, 'inc')
end
local version = tonumber(current or '0') + 1
local fields = cjson.decode(ARGV[4])
local flat = {}
for name, value in pairs(fields) do
  flat[#flat + 1] = name
  flat[#flat + 1] = tostring(value)
end
redis.call('HSET', K_CFG, 'version', version, 'inc', inc, unpack(flat))
emit(inc, 'room_updated', nil,
     { config = fields, created = created, version = version, incarnation = inc }, now_ms())
return cjson.encode({ created = created, version = version })
