-- Mint an invite: joining with it places a person at its priority, `uses` times at most,
-- until `expires_at`. ARGV: room, invite_id, priority, uses, expires_at_ms (0: never)
-- Answers the invite's record.
local invite_id = ARGV[2]
local cfg, err = room_for_change()
if not cfg then
  return err
end
local now = now_ms()
local expires_at = tonumber(ARGV[5])
if expires_at > 0 and expires_at <= now then
  return fail('invalid_invite', 'expires_at is in the past')
end
if redis.call('HEXISTS', K_INVITES, invite_id) == 1 then
  return fail('conflict')
end
local invite = new_invite(tonumber(ARGV[3]), tonumber(ARGV[4]), expires_at)
put_invite(invite_id, invite)
emit(cfg.inc, 'invite_created', nil, { invite_id = invite_id, priority = invite.priority,
                                       uses = invite.uses, expires_at = expires_at }, now)
return cjson.encode(invite)
