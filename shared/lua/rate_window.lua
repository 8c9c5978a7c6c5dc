-- One identity's moving window of a rate limit (shared/store/limits.py); not a room
-- script: its header gives the one key, K_WINDOW, the list of the times (ms, the store's
-- clock) of its latest counted calls, newest first, at most the limit long.
-- ARGV: mode, limit, window_ms. Modes: 'hit' counts the call unless the window is full;
-- 'test' counts nothing.
-- Answers 0 when the window has room (for 'hit': counted), else the ms until it has.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mode, limit, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local wait = 0
local oldest = redis.call('LINDEX', K_WINDOW, limit - 1)
if oldest then
  local age = now - tonumber(oldest)
  if age < window then
    wait = window - age
  end
end
if mode == 'hit' and wait == 0 then
  redis.call('LPUSH', K_WINDOW, now)
  redis.call('LTRIM', K_WINDOW, 0, limit - 1)
  redis.call('PEXPIRE', K_WINDOW, window)
end
return wait
