-- Heartbeats a gateway gathered, marked in one call: each place still waiting is seen
-- now (places no longer in the line are left alone). ARGV: room, position_id...
local now = now_ms()
local marked = 0
local batch = {}
for i = 2, #ARGV do
  batch[#batch + 1] = now
  batch[#batch + 1] = ARGV[i]
  if #batch >= 4000 or i == #ARGV then
    marked = marked + redis.call('ZADD', K_SEEN, 'XX', 'CH', unpack(batch))
    batch = {}
  end
end
return #ARGV - 1
